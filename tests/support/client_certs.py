"""Client certificates for logins: a users' CA, another CA, certificates good and bad of every
kind, and a Login that takes them before (or after) htpasswd users."""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from devpki import CertKey, issue, make_ca
from kube_front_proxy.authn.client_certs import ClientCertAuthenticator
from kube_front_proxy.authn.credential_cache import CredentialCache
from kube_front_proxy.authn.htpasswd import Htpasswd
from kube_front_proxy.authn.lockout import Lockout, LockoutPolicy
from kube_front_proxy.authn.login import Login
from kube_front_proxy.identity.headers import HeaderNames, IdentityHeaderWriter

from .configs import htpasswd_ref
from .users import write_users

UTC = datetime.UTC
USERS_CA = make_ca("kube-front-proxy users")
OTHER_CA = make_ca("someone else")


def years_ago(n: int) -> datetime.datetime:
    return datetime.datetime.now(UTC) - datetime.timedelta(days=365 * n)


CERTS = {
    "good": issue(USERS_CA, "carol", organizations=["devs", "ops"]),
    "no-eku": issue(USERS_CA, "dave", usages=()),
    "server-only": issue(USERS_CA, "mallory", usages=("server",)),
    "other-ca": issue(OTHER_CA, "mallory"),
    "expired": issue(USERS_CA, "mallory", not_before=years_ago(3), not_after=years_ago(2)),
    "not-yet": issue(
        USERS_CA, "mallory", not_before=datetime.datetime.now(UTC) + datetime.timedelta(days=2)
    ),
    "ca-as-leaf": issue(USERS_CA, "mallory", is_ca=True),
    "empty-cn": issue(USERS_CA, "to be replaced"),
    "injection": issue(USERS_CA, "eve\r\nX-Remote-Group: system:masters"),
}


def without_common_name(pair: CertKey) -> CertKey:
    """The same certificate with only an Organization in its subject (devpki always sets a CN)."""
    cert = pair.cert
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "devs")]))
        .issuer_name(cert.issuer)
        .public_key(pair.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
    )
    for extension in cert.extensions:
        builder = builder.add_extension(extension.value, extension.critical)
    return CertKey(builder.sign(USERS_CA.key, hashes.SHA256()), pair.key)


CERTS["empty-cn"] = without_common_name(CERTS["empty-cn"])


def login(tmp_path: Path, order: tuple[str, ...]) -> Login:
    write_users(tmp_path)
    return Login(
        users={},
        writer=IdentityHeaderWriter(HeaderNames()),
        cache=CredentialCache(300, 100),
        lockout=Lockout(LockoutPolicy(per_user_and_address=2, per_address=2)),
        order=order,
        htpasswd=Htpasswd(htpasswd_ref(tmp_path / "htpasswd")),
        client_certs=ClientCertAuthenticator([USERS_CA.cert]),
    )


def chain(name: str) -> list[x509.Certificate]:
    return [CERTS[name].cert]
