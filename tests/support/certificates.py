"""Certificates of the shapes certs/devpki.py does not make (no basic constraints,
anyExtendedKeyUsage, path-length limits, cross-signed), built with `cryptography`; devpki's own
CertKey, issue and make_ca for the rest."""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devpki import CertKey, issue, make_ca, make_dev_pki

__all__ = [
    "CertKey", "cross_sign", "custom_cert", "issue", "make_ca", "make_dev_pki", "now",
]  # fmt: skip


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
