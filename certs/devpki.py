#!/usr/bin/env python3
"""Create a development PKI shaped like kubeadm's /etc/kubernetes/pki.

    python certs/devpki.py [--out certs/out] [--force]

Files written (kubeadm names where kubeadm has them):

    ca.crt/.key                   cluster CA; signs the API server's serving certificate
    apiserver.crt/.key            API server serving cert, SANs kubernetes(.default...), 127.0.0.1
    front-proxy-ca.crt/.key       --requestheader-client-ca-file
    front-proxy-client.crt/.key   CN front-proxy-client, clientAuth: what the proxy shows upstream
    proxy-ca.crt/.key             signs the proxy's own serving certificate (not a kubeadm file)
    proxy-server.crt/.key         the proxy's serving cert, SANs localhost, 127.0.0.1, ::1

The functions are importable so that tests can mint certificates of any shape.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_USAGES = {"client": ExtendedKeyUsageOID.CLIENT_AUTH, "server": ExtendedKeyUsageOID.SERVER_AUTH}


@dataclass(frozen=True)
class CertKey:
    """A certificate with its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def write(self, directory: Path, name: str) -> tuple[Path, Path]:
        """Write NAME.crt and NAME.key (mode 0600) into directory."""
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
        cert_path.write_bytes(self.cert_pem())
        key_path.touch(mode=0o600)
        key_path.chmod(0o600)
        key_path.write_bytes(self.key_pem())
        return cert_path, key_path


def load(cert: Path, key: Path) -> CertKey:
    """Read back a pair written by CertKey.write (to sign more certificates with a CA)."""
    private_key = serialization.load_pem_private_key(key.read_bytes(), password=None)
    if not isinstance(private_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key}: not an EC private key")
    return CertKey(x509.load_pem_x509_certificate(cert.read_bytes()), private_key)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _build(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: CertKey | None,
    *,
    is_ca: bool,
    not_before: datetime.datetime | None,
    not_after: datetime.datetime | None,
) -> x509.CertificateBuilder:
    # Back-date by an hour so that small clock differences between processes don't matter.
    start = not_before or _now() - datetime.timedelta(hours=1)
    end = not_after or start + datetime.timedelta(days=3650 if is_ca else 365)
    signer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()),
            critical=False,
        )
    )
    if is_ca:
        usage = x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False,
        )  # fmt: skip
    else:
        usage = x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=True,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False,
        )  # fmt: skip
    return builder.add_extension(usage, critical=True)


def make_ca(common_name: str) -> CertKey:
    """A self-signed CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = _build(subject, key, None, is_ca=True, not_before=None, not_after=None)
    return CertKey(builder.sign(key, hashes.SHA256()), key)


def issue(
    ca: CertKey,
    common_name: str,
    *,
    organizations: Sequence[str] = (),
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    usages: Sequence[str] = ("client",),
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    is_ca: bool = False,
) -> CertKey:
    """A certificate signed by ca. usages: "client" and/or "server"; empty means no EKU at all."""
    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    builder = _build(
        x509.Name(attributes), key, ca, is_ca=is_ca, not_before=not_before, not_after=not_after
    )
    if usages:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([_USAGES[u] for u in usages]), critical=False
        )
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return CertKey(builder.sign(ca.key, hashes.SHA256()), key)


APISERVER_DNS_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "localhost",
)
LOOPBACK_IPS = ("127.0.0.1", "::1")


def make_dev_pki(out: Path, *, force: bool = False) -> list[Path]:
    """Write the whole development PKI into out; refuses to overwrite unless force."""
    if (out / "ca.crt").exists() and not force:
        raise FileExistsError(f"{out} already holds a PKI; pass --force to replace it")
    cluster_ca = make_ca("kubernetes")
    front_proxy_ca = make_ca("front-proxy-ca")
    proxy_ca = make_ca("kube-front-proxy-ca")
    pairs = {
        "ca": cluster_ca,
        "apiserver": issue(
            cluster_ca,
            "kube-apiserver",
            dns_names=APISERVER_DNS_NAMES,
            ip_addresses=LOOPBACK_IPS,
            usages=("server",),
        ),
        "front-proxy-ca": front_proxy_ca,
        "front-proxy-client": issue(front_proxy_ca, "front-proxy-client", usages=("client",)),
        "proxy-ca": proxy_ca,
        "proxy-server": issue(
            proxy_ca,
            "kube-front-proxy",
            dns_names=("localhost",),
            ip_addresses=LOOPBACK_IPS,
            usages=("server",),
        ),
    }
    written: list[Path] = []
    for name, pair in pairs.items():
        written.extend(pair.write(out, name))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    parser.add_argument("--force", action="store_true", help="replace an existing PKI")
    args = parser.parse_args(argv)
    try:
        for path in make_dev_pki(args.out, force=args.force):
            print(path)
    except FileExistsError as e:
        print(f"devpki: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
