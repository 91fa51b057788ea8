"""X.509 certificates written byte by byte, so that a test can choose encodings a library
would never produce: the ones OpenSSL reads (BER-lenient) and `cryptography` refuses (DER).

Only what the attacks need: an EC P-256 subject key, a self- or CA-signed certificate, and
three ways to break DER while keeping the certificate meaningful to OpenSSL.
"""

from __future__ import annotations

import datetime
import ssl
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

# Object identifiers, already DER-encoded (content bytes only).
ECDSA_WITH_SHA256 = bytes.fromhex("2a8648ce3d040302")
COMMON_NAME = bytes.fromhex("550403")
ORGANIZATION = bytes.fromhex("55040a")
BASIC_CONSTRAINTS = bytes.fromhex("551d13")
EXTENDED_KEY_USAGE = bytes.fromhex("551d25")
CLIENT_AUTH = bytes.fromhex("2b06010505070302")

TRUE = b"\x01\x01\xff"
# BER's TRUE is any non-zero octet; DER allows only 0xFF.
LAX_TRUE = b"\x01\x01\x01"
FALSE = b"\x01\x01\x00"


def tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + content


def seq(*items: bytes) -> bytes:
    return tlv(0x30, b"".join(items))


def integer(n: int) -> bytes:
    raw = n.to_bytes(n.bit_length() // 8 + 1, "big")
    return tlv(0x02, raw)


def oid(encoded: bytes) -> bytes:
    return tlv(0x06, encoded)


def utf8(text: str) -> bytes:
    return tlv(0x0C, text.encode())


def name(common_name: str, organizations: tuple[str, ...] = ()) -> bytes:
    rdns = [tlv(0x31, seq(oid(ORGANIZATION), utf8(o))) for o in organizations]
    rdns.append(tlv(0x31, seq(oid(COMMON_NAME), utf8(common_name))))
    return seq(*rdns)


def utc_time(when: datetime.datetime, zone: str = "Z") -> bytes:
    """UTCTime; DER requires the `Z` form, BER also takes an offset such as `+0000`."""
    return tlv(0x17, when.strftime("%y%m%d%H%M%S").encode() + zone.encode())


def extension(ext_id: bytes, value: bytes, critical: bytes = b"") -> bytes:
    """critical: b"" (DEFAULT FALSE, as DER must), or an explicit BOOLEAN."""
    return seq(oid(ext_id), critical, tlv(0x04, value))


@dataclass(frozen=True)
class Encoding:
    """The choices that decide whether a certificate is DER."""

    basic_constraints_critical: bytes = TRUE
    eku_critical: bytes = b""
    not_before_zone: str = "Z"


DER = Encoding()
# Each is read by OpenSSL and refused by cryptography ("failed to parse certificate").
NOT_DER = {
    "boolean-true-as-01": Encoding(basic_constraints_critical=LAX_TRUE),
    "explicit-default-false": Encoding(eku_critical=FALSE),
    "utctime-with-offset": Encoding(not_before_zone="+0000"),
}


@dataclass(frozen=True)
class Issued:
    der: bytes
    key: ec.EllipticCurvePrivateKey

    def pem(self) -> bytes:
        return ssl.DER_cert_to_PEM_cert(self.der).encode()

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def certificate(
    subject: bytes,
    issuer: bytes,
    signer: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey | None = None,
    encoding: Encoding = DER,
    serial: int = 0x1234567,
) -> Issued:
    """A client certificate (EKU clientAuth, not a CA) for key, signed by signer."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    extensions = seq(
        extension(BASIC_CONSTRAINTS, seq(), encoding.basic_constraints_critical),
        extension(EXTENDED_KEY_USAGE, seq(oid(CLIENT_AUTH)), encoding.eku_critical),
    )
    tbs = seq(
        tlv(0xA0, integer(2)),
        integer(serial),
        seq(oid(ECDSA_WITH_SHA256)),
        issuer,
        seq(
            utc_time(now - datetime.timedelta(hours=1), encoding.not_before_zone),
            utc_time(now + datetime.timedelta(days=1)),
        ),
        subject,
        spki,
        tlv(0xA3, extensions),
    )
    signature = signer.sign(tbs, ec.ECDSA(hashes.SHA256()))
    der = seq(tbs, seq(oid(ECDSA_WITH_SHA256)), tlv(0x03, b"\x00" + signature))
    return Issued(der, key)
