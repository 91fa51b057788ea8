"""Fixtures and helpers for the emulator's own tests (tests/test_emulator_*.py import them).

Certificates come from the project's `certs/devpki.py`; the odd shapes it does not make (no basic
constraints, anyExtendedKeyUsage, path-length limits) are built here with `cryptography`.
"""

from __future__ import annotations

import datetime
import ssl
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.emulator import EmulatorConfig, EmulatorServer
from tests.support import raw_request

REPO = Path(__file__).resolve().parent.parent
if str(REPO / "certs") not in sys.path:
    sys.path.insert(0, str(REPO / "certs"))

from devpki import CertKey, issue, make_ca  # noqa: E402

__all__ = ["CertKey", "issue", "make_ca"]

FRONT_PROXY_CN = "front-proxy-client"


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def custom_cert(
    issuer: CertKey | None,
    common_name: str,
    *,
    ca: bool | None = False,
    path_length: int | None = None,
    ekus: Sequence[x509.ObjectIdentifier] | None = (ExtendedKeyUsageOID.CLIENT_AUTH,),
    key_cert_sign: bool | None = None,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    critical_unknown_extension: bool = False,
) -> CertKey:
    """A certificate of any shape devpki does not make.

    ca=None leaves out basicConstraints; ekus=None leaves out the EKU extension;
    key_cert_sign=None leaves out keyUsage. issuer=None makes it self-signed.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    signer_key = issuer.key if issuer else key
    start = not_before or now() - datetime.timedelta(hours=1)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(not_after or start + datetime.timedelta(days=30))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()), False
        )
    )
    if ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), True
        )
    if ekus is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(ekus)), False)
    if key_cert_sign is not None:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=key_cert_sign,
                crl_sign=key_cert_sign, encipher_only=False, decipher_only=False,
            ),
            True,
        )  # fmt: skip
    if critical_unknown_extension:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"),
            True,
        )
    return CertKey(builder.sign(signer_key, hashes.SHA256()), key)


def cross_sign(pair: CertKey, issuer: CertKey) -> CertKey:
    """The same subject and key as pair, signed by another issuer (a cross-certificate)."""
    cert = pair.cert
    builder = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(issuer.cert.subject)
        .public_key(pair.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
    )
    for ext in cert.extensions:
        if isinstance(ext.value, x509.AuthorityKeyIdentifier):
            continue
        builder = builder.add_extension(ext.value, ext.critical)
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False
    )
    return CertKey(builder.sign(issuer.key, hashes.SHA256()), pair.key)


@dataclass(frozen=True)
class EmulatorPKI:
    """kubeadm layout: the front-proxy CA is not the client CA."""

    dir: Path
    cluster_ca: CertKey
    front_proxy_ca: CertKey
    other_ca: CertKey
    apiserver: CertKey
    front_proxy_client: CertKey

    def path(self, name: str) -> Path:
        return self.dir / name

    def write(self, pair: CertKey, name: str) -> tuple[Path, Path]:
        """Write a certificate and key once under a unique name; returns (crt, key)."""
        crt, key = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        if not crt.exists():
            pair.write(self.dir, name)
        return crt, key

    def write_chain(self, pairs: Sequence[CertKey], name: str) -> tuple[Path, Path]:
        """A client certificate file holding leaf + intermediates, and the leaf's key."""
        crt, key = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        crt.write_bytes(b"".join(p.cert_pem() for p in pairs))
        key.write_bytes(pairs[0].key_pem())
        return crt, key


def make_emulator_pki(directory: Path) -> EmulatorPKI:
    cluster_ca = make_ca("kubernetes")
    front_proxy_ca = make_ca("front-proxy-ca")
    other_ca = make_ca("some-other-ca")
    apiserver = issue(
        cluster_ca, "kube-apiserver", dns_names=("localhost",), ip_addresses=("127.0.0.1",),
        usages=("server",),
    )  # fmt: skip
    front_proxy_client = issue(front_proxy_ca, FRONT_PROXY_CN, usages=("client",))
    pki = EmulatorPKI(directory, cluster_ca, front_proxy_ca, other_ca, apiserver,
                      front_proxy_client)  # fmt: skip
    for pair, name in [
        (cluster_ca, "ca"),
        (front_proxy_ca, "front-proxy-ca"),
        (other_ca, "other-ca"),
        (apiserver, "apiserver"),
        (front_proxy_client, "front-proxy-client"),
    ]:
        pki.write(pair, name)
    return pki


@pytest.fixture(scope="session")
def emulator_pki(tmp_path_factory: pytest.TempPathFactory) -> EmulatorPKI:
    return make_emulator_pki(tmp_path_factory.mktemp("emulator-pki"))


def kubeadm_config(pki: EmulatorPKI | Path, **overrides: object) -> EmulatorConfig:
    """kubeadm's flags and port 0, with the certificates of pki (this module's, or the
    session's `pki` directory from certs/devpki.py, which has the same file names)."""
    directory = pki.dir if isinstance(pki, EmulatorPKI) else pki
    settings: dict[str, object] = {
        "tls_cert_file": directory / "apiserver.crt",
        "tls_private_key_file": directory / "apiserver.key",
        "secure_port": 0,
        "client_ca_file": directory / "ca.crt",
        "requestheader_client_ca_file": directory / "front-proxy-ca.crt",
        "requestheader_allowed_names": (FRONT_PROXY_CN,),
    }
    settings.update(overrides)
    return EmulatorConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def emulator_server(
    emulator_pki: EmulatorPKI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmulatorServer]:
    """An in-process emulator in the kubeadm layout, logging to a file."""
    log = tmp_path_factory.mktemp("emulator-log") / "requests.jsonl"
    with EmulatorServer(kubeadm_config(emulator_pki, request_log=log)) as server:
        yield server


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n.lower() == name.lower()), None)


def client_context(pki: EmulatorPKI, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.path("ca.crt")))
    # These raw requests are HTTP/1.1: offering h2 too would get h2 (tests/emulator/http2.py).
    context.set_alpn_protocols(["http/1.1"])
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    return context


def request(
    server: EmulatorServer,
    pki: EmulatorPKI,
    method: str,
    path: str,
    headers: Sequence[tuple[str, str]] = (),
    *,
    cert: tuple[Path, Path] | None = None,
    body: bytes | None = None,
) -> RawResponse:
    """One HTTPS request with exactly these headers (plus Host), repeated names included."""
    status, response_headers, content = raw_request(
        server.host, server.port, client_context(pki, cert), method, path, list(headers), body,
        timeout=10,
    )  # fmt: skip
    return RawResponse(status, response_headers, content)
