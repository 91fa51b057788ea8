"""Users who log in with a client certificate, like kube-apiserver's x509 authenticator.

Follows k8s.io/apiserver pkg/authentication/request/x509/x509.go: the chain must verify against
the configured user CAs for client authentication at the current time, then
CommonNameUserConversion makes the CN the user and the O values the groups; an empty CN is
refused. The TLS handshake accepts any certificate (it only asks for one), so that a bad
certificate gets a 401 for its request, as it does from kube-apiserver, instead of a broken
handshake; a client without a certificate can still log in another way.
"""

from __future__ import annotations

import datetime
import hashlib
from collections import OrderedDict
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kube_front_proxy.identity.headers import Identity

_CLIENT_USAGES = frozenset(
    (ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE)
)


class CertificateRejected(Exception):
    """Why a client certificate does not log anyone in (for the proxy's log)."""


def _check_client_usage(
    _policy: verification.Policy, _cert: x509.Certificate, eku: x509.ExtendedKeyUsage | None
) -> None:
    # Go's x509.Verify with ExtKeyUsageClientAuth: a leaf without the extension is valid for any
    # usage; one that lists usages must list clientAuth (or any).
    if eku is not None and not _CLIENT_USAGES.intersection(eku):
        raise ValueError("the certificate is not valid for client authentication")


# Client certificates (kubeadm's admin.conf among them) usually have no subjectAltName, which
# the WebPKI profile requires; everything else of that profile still applies.
_LEAF_POLICY = (
    verification.ExtensionPolicy.webpki_defaults_ee()
    .may_be_present(x509.SubjectAlternativeName, verification.Criticality.AGNOSTIC, None)
    .may_be_present(x509.ExtendedKeyUsage, verification.Criticality.AGNOSTIC, _check_client_usage)
)


class ClientCertAuthenticator:
    """Verifies presented chains against the user CAs; remembers chains that verified."""

    def __init__(self, roots: Sequence[x509.Certificate], max_entries: int = 10000) -> None:
        if not roots:
            raise ValueError("no user CA certificates")
        self.roots = tuple(roots)
        self._store = verification.Store(list(roots))
        self._max_entries = max_entries
        # chain digest -> (identity, end of validity): a verified chain stays verified until
        # its first certificate expires, so the signature checks run once per chain.
        self._verified: OrderedDict[bytes, tuple[Identity, datetime.datetime]] = OrderedDict()

    def authenticate(self, chain: Sequence[x509.Certificate]) -> Identity:
        """The user a presented chain (leaf first) stands for; raises CertificateRejected."""
        if not chain:
            raise CertificateRejected("no client certificate")
        now = datetime.datetime.now(datetime.UTC)
        key = hashlib.sha256(b"".join(c.fingerprint(hashes.SHA256()) for c in chain)).digest()
        known = self._verified.get(key)
        if known and now < known[1]:
            self._verified.move_to_end(key)
            return known[0]
        identity, valid_until = self._verify(chain, now)
        self._verified[key] = (identity, valid_until)
        if len(self._verified) > self._max_entries:
            self._verified.popitem(last=False)
        return identity

    def _verify(
        self, chain: Sequence[x509.Certificate], now: datetime.datetime
    ) -> tuple[Identity, datetime.datetime]:
        verifier = (
            verification.PolicyBuilder()
            .store(self._store)
            .time(now)
            .extension_policies(
                ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
                ee_policy=_LEAF_POLICY,
            )
            .build_client_verifier()
        )
        try:
            verified = verifier.verify(chain[0], list(chain[1:]))
        except verification.VerificationError as e:
            raise CertificateRejected(str(e)) from None
        leaf = chain[0]
        names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        user = str(names[0].value) if names else ""
        if not user:
            raise CertificateRejected("common name of the client certificate is empty")
        groups = tuple(
            str(a.value) for a in leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        )
        valid_until = min(c.not_valid_after_utc for c in verified.chain)
        return Identity(user=user, groups=groups), valid_until
