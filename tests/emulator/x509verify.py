"""Client-certificate chain verification with Go crypto/x509 semantics.

kube-apiserver verifies client certificates per request, not in the TLS handshake:
`k8s.io/apiserver pkg/authentication/request/x509/x509.go` (`Verifier.AuthenticateRequest` for the
front-proxy CA, `Authenticator.AuthenticateRequest` for `--client-ca-file`) calls Go's
`(*x509.Certificate).Verify` with the options from
`k8s.io/apiserver pkg/server/dynamiccertificates/dynamic_cafile_content.go`
(`newCABundleAndVerifier`, `defaultVerifyOptions`): roots = the CA bundle, intermediates = the
peer's chain after the leaf, key usages = [clientAuth], current time, no DNS name.

What follows mirrors Go's `crypto/x509/verify.go` (Go 1.23, which kube 1.32 is built with):
`Verify`, `isValid`, `buildChains`, `alreadyInChain`, `checkChainForKeyUsage`, `CertPool
.findPotentialParents`, and `crypto/x509/x509.go` `CheckSignatureFrom`, with the same error texts.
Not reproduced: name constraints (not enforced; chains through name-constrained CAs are treated as
unconstrained) and certificate policies. Hostnames and SANs are not checked: kube-apiserver passes
no DNSName.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH
ANY_EXTENDED_KEY_USAGE = ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE

# Go's maxChainSignatureChecks: bounds work on hostile pools.
MAX_CHAIN_SIGNATURE_CHECKS = 100

# Extensions Go's parser understands; any other extension marked critical lands in
# UnhandledCriticalExtensions and fails verification (`crypto/x509/parser.go`).
_HANDLED_EXTENSIONS = frozenset(
    {
        ExtensionOID.KEY_USAGE,
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.NAME_CONSTRAINTS,
        ExtensionOID.CRL_DISTRIBUTION_POINTS,
        ExtensionOID.CERTIFICATE_POLICIES,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
    }
)


class VerifyError(Exception):
    """Any verification failure; str() is Go's error text."""


class CertificateInvalidError(VerifyError):
    """Go's `x509.CertificateInvalidError`."""

    _TEXT: ClassVar[dict[str, str]] = {
        "NotAuthorizedToSign": "x509: certificate is not authorized to sign other certificates",
        "Expired": "x509: certificate has expired or is not yet valid: ",
        "TooManyIntermediates": "x509: too many intermediates for path length constraint",
        "IncompatibleUsage": "x509: certificate specifies an incompatible key usage",
        "NameMismatch": "x509: issuer name does not match subject from issuing certificate",
    }

    def __init__(self, cert: x509.Certificate, reason: str, detail: str = "") -> None:
        self.cert = cert
        self.reason = reason
        self.detail = detail
        super().__init__(self._TEXT[reason] + detail)


class UnknownAuthorityError(VerifyError):
    """Go's `x509.UnknownAuthorityError`, including the "possibly because of" hint."""

    def __init__(
        self,
        cert: x509.Certificate,
        hint_err: VerifyError | None = None,
        hint_cert: x509.Certificate | None = None,
    ) -> None:
        self.cert = cert
        self.hint_err = hint_err
        self.hint_cert = hint_cert
        text = "x509: certificate signed by unknown authority"
        if hint_err is not None and hint_cert is not None:
            text += (
                f" (possibly because of {go_quote(str(hint_err))} while trying to verify"
                f" candidate authority certificate {go_quote(_hint_name(hint_cert))})"
            )
        super().__init__(text)


class ConstraintViolationError(VerifyError):
    """Go's `x509.ConstraintViolationError` (parent not allowed to sign)."""

    def __init__(self) -> None:
        super().__init__(
            "x509: invalid signature: parent certificate cannot sign this kind of certificate"
        )


class UnhandledCriticalExtension(VerifyError):
    def __init__(self) -> None:
        super().__init__("x509: unhandled critical extension")


class InsecureAlgorithmError(VerifyError):
    def __init__(self, algorithm: str) -> None:
        text = f"x509: cannot verify signature: insecure algorithm {algorithm}"
        if algorithm.startswith("SHA1"):
            text += " (temporarily override with GODEBUG=x509sha1=1)"
        super().__init__(text)


class SignatureError(VerifyError):
    """A signature that does not verify (Go's per-algorithm texts)."""


class ChainLimitError(VerifyError):
    def __init__(self) -> None:
        super().__init__(
            "x509: signature check attempts limit reached while verifying certificate chain"
        )


def go_quote(text: str) -> str:
    """strconv.Quote for the printable strings that appear in these messages."""
    out = []
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def common_name(cert: x509.Certificate) -> str:
    """pkix.Name.CommonName: Go keeps the LAST CN attribute it sees."""
    values = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(values[-1].value) if values else ""


def organizations(cert: x509.Certificate) -> list[str]:
    """pkix.Name.Organization, in order of appearance."""
    attributes = cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)
    return [str(a.value) for a in attributes]


def _hint_name(cert: x509.Certificate) -> str:
    name = common_name(cert)
    if name:
        return name
    orgs = organizations(cert)
    if orgs:
        return orgs[0]
    return f"serial:{cert.serial_number}"


# ---------------------------------------------------------------------------------------------
# Certificate properties as Go's parser exposes them.


def _raw_subject(cert: x509.Certificate) -> bytes:
    return cert.subject.public_bytes()


def _raw_issuer(cert: x509.Certificate) -> bytes:
    return cert.issuer.public_bytes()


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _ext[E: x509.ExtensionType](cert: x509.Certificate, kind: type[E]) -> E | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _subject_key_id(cert: x509.Certificate) -> bytes:
    ski = _ext(cert, x509.SubjectKeyIdentifier)
    return ski.digest if ski is not None else b""


def _authority_key_id(cert: x509.Certificate) -> bytes:
    aki = _ext(cert, x509.AuthorityKeyIdentifier)
    if aki is None or aki.key_identifier is None:
        return b""
    return aki.key_identifier


def _basic_constraints(cert: x509.Certificate) -> tuple[bool, bool, int]:
    """(BasicConstraintsValid, IsCA, MaxPathLen) with Go's -1 for "no limit"."""
    bc = _ext(cert, x509.BasicConstraints)
    if bc is None:
        return False, False, -1
    return True, bc.ca, bc.path_length if bc.path_length is not None else -1


def _ext_key_usages(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    eku = _ext(cert, x509.ExtendedKeyUsage)
    return list(eku) if eku is not None else []


def _has_unhandled_critical_extension(cert: x509.Certificate) -> bool:
    return any(e.critical and e.oid not in _HANDLED_EXTENSIONS for e in cert.extensions)


def _valid_window(cert: x509.Certificate) -> tuple[datetime.datetime, datetime.datetime]:
    return cert.not_valid_before_utc, cert.not_valid_after_utc


def _rfc3339(t: datetime.datetime) -> str:
    t = t.astimezone(datetime.UTC).replace(microsecond=0)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def column_separated_hex(data: bytes) -> str:
    """`columnSeparatedHex` in x509.go: `AB:CD:...`, empty for no bytes."""
    return ":".join(f"{b:02X}" for b in data)


def certificate_identifier(cert: x509.Certificate) -> str:
    """`certificateIdentifier` in x509.go, used in the client-cert authenticator's errors."""
    return (
        f"SN={cert.serial_number}, SKID={column_separated_hex(_subject_key_id(cert))}, "
        f"AKID={column_separated_hex(_authority_key_id(cert))}"
    )


# ---------------------------------------------------------------------------------------------
# Pools


_PEM_CERT = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)


def parse_certs_pem(data: bytes) -> list[x509.Certificate]:
    """client-go `util/cert` `ParseCertsPEM`: every CERTIFICATE block, other blocks skipped."""
    certs = [x509.load_pem_x509_certificate(m.group(0)) for m in _PEM_CERT.finditer(data)]
    if not certs:
        raise ValueError("data does not contain any valid RSA or ECDSA certificates")
    return certs


@dataclass
class CertPool:
    """Go's `x509.CertPool`: certificates indexed by raw subject, duplicates dropped."""

    certs: list[x509.Certificate] = field(default_factory=list)

    def __post_init__(self) -> None:
        initial, self.certs = self.certs, []
        self._ders: set[bytes] = set()
        self._by_name: dict[bytes, list[x509.Certificate]] = {}
        for cert in initial:
            self.add(cert)

    @classmethod
    def from_pem(cls, data: bytes) -> CertPool:
        """`cert.NewPoolFromBytes`."""
        return cls(parse_certs_pem(data))

    @classmethod
    def from_file(cls, path: str | Path) -> CertPool:
        return cls.from_pem(Path(path).read_bytes())

    def add(self, cert: x509.Certificate) -> None:
        der = _der(cert)
        if der in self._ders:
            return
        self._ders.add(der)
        self.certs.append(cert)
        self._by_name.setdefault(_raw_subject(cert), []).append(cert)

    def __len__(self) -> int:
        return len(self.certs)

    def contains(self, cert: x509.Certificate) -> bool:
        return _der(cert) in self._ders

    def find_potential_parents(self, cert: x509.Certificate) -> list[x509.Certificate]:
        """Same subject as cert's issuer, best key-identifier match first (like Go)."""
        akid = _authority_key_id(cert)
        matching: list[x509.Certificate] = []
        one_key_id: list[x509.Certificate] = []
        mismatch: list[x509.Certificate] = []
        for candidate in self._by_name.get(_raw_issuer(cert), []):
            skid = _subject_key_id(candidate)
            if skid == akid:
                matching.append(candidate)
            elif (not skid and akid) or (skid and not akid):
                one_key_id.append(candidate)
            else:
                mismatch.append(candidate)
        return matching + one_key_id + mismatch


# ---------------------------------------------------------------------------------------------
# Signatures


def _algorithm_name(cert: x509.Certificate) -> str:
    """Go's SignatureAlgorithm.String() (`SHA1-RSA`, `ECDSA-SHA1`, ...) for error texts."""
    hash_alg = cert.signature_hash_algorithm
    oid = cert.signature_algorithm_oid.dotted_string
    if hash_alg is None:
        return oid
    digest = hash_alg.name.upper().replace("-", "")
    if oid.startswith("1.2.840.10045.4"):
        return f"ECDSA-{digest}"
    if oid.startswith("1.2.840.113549.1.1"):
        return f"{digest}-RSA"
    return oid


def _check_signature_from(child: x509.Certificate, parent: x509.Certificate) -> None:
    """`(*Certificate).CheckSignatureFrom` plus `checkSignature`."""
    bc_valid, is_ca, _ = _basic_constraints(parent)
    if (parent.version == x509.Version.v3 and not bc_valid) or (bc_valid and not is_ca):
        raise ConstraintViolationError()
    ku = _ext(parent, x509.KeyUsage)
    if ku is not None and not ku.key_cert_sign:
        # Go: KeyUsage != 0 && KeyUsage&KeyUsageCertSign == 0. An all-zero KeyUsage extension is
        # not representable by cryptography's KeyUsage type, so "present" stands for "non-zero".
        raise ConstraintViolationError()
    hash_alg = child.signature_hash_algorithm
    if isinstance(hash_alg, hashes.MD5 | hashes.SHA1):
        raise InsecureAlgorithmError(_algorithm_name(child))
    try:
        public_key = parent.public_key()
    except (UnsupportedAlgorithm, ValueError) as e:
        raise SignatureError("x509: cannot verify signature: algorithm unimplemented") from e
    try:
        child.verify_directly_issued_by(parent)
    except InvalidSignature as e:
        raise SignatureError(_bad_signature_text(public_key)) from e
    except (TypeError, ValueError, UnsupportedAlgorithm) as e:
        raise SignatureError(
            f"x509: signature algorithm specifies an {_algorithm_name(child)} public key,"
            f" but have public key of type {_go_key_type(public_key)}"
        ) from e


def _bad_signature_text(public_key: object) -> str:
    if isinstance(public_key, rsa.RSAPublicKey):
        return "crypto/rsa: verification error"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "x509: ECDSA verification failure"
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "x509: Ed25519 verification failure"
    return "x509: signature verification failure"


def _go_key_type(public_key: object) -> str:
    if isinstance(public_key, rsa.RSAPublicKey):
        return "*rsa.PublicKey"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "*ecdsa.PublicKey"
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "ed25519.PublicKey"
    if isinstance(public_key, dsa.DSAPublicKey | ed448.Ed448PublicKey):
        return "<unsupported>"
    return type(public_key).__name__


# ---------------------------------------------------------------------------------------------
# Verify


@dataclass(frozen=True)
class VerifyOptions:
    """The subset of Go's `x509.VerifyOptions` kube-apiserver uses."""

    roots: CertPool
    intermediates: CertPool = field(default_factory=CertPool)
    key_usages: tuple[x509.ObjectIdentifier, ...] = (CLIENT_AUTH,)
    current_time: datetime.datetime | None = None

    def now(self) -> datetime.datetime:
        return self.current_time or datetime.datetime.now(datetime.UTC)


_LEAF, _INTERMEDIATE, _ROOT = "leaf", "intermediate", "root"


def _is_valid(
    cert: x509.Certificate, cert_type: str, chain: Sequence[x509.Certificate], opts: VerifyOptions
) -> None:
    """Go's `(*Certificate).isValid`, without name-constraint and policy checks."""
    if _has_unhandled_critical_extension(cert):
        raise UnhandledCriticalExtension()
    if chain and _raw_issuer(chain[-1]) != _raw_subject(cert):
        raise CertificateInvalidError(cert, "NameMismatch")
    now = opts.now()
    not_before, not_after = _valid_window(cert)
    if now < not_before:
        raise CertificateInvalidError(
            cert,
            "Expired",
            f"current time {_rfc3339(now)} is before {_rfc3339(not_before)}",
        )
    if now > not_after:
        raise CertificateInvalidError(
            cert,
            "Expired",
            f"current time {_rfc3339(now)} is after {_rfc3339(not_after)}",
        )
    bc_valid, is_ca, max_path_len = _basic_constraints(cert)
    if cert_type == _INTERMEDIATE and (not bc_valid or not is_ca):
        raise CertificateInvalidError(cert, "NotAuthorizedToSign")
    if bc_valid and max_path_len >= 0 and len(chain) - 1 > max_path_len:
        raise CertificateInvalidError(cert, "TooManyIntermediates")


def _same_identity(a: x509.Certificate, b: x509.Certificate) -> bool:
    """Go's `alreadyInChain`: equal, or same subject, public key and SAN extension."""
    if _der(a) == _der(b):
        return True
    if _raw_subject(a) != _raw_subject(b):
        return False
    try:
        pa = a.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        pb = b.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except (UnsupportedAlgorithm, ValueError):
        return False
    if pa != pb:
        return False
    return _ext(a, x509.SubjectAlternativeName) == _ext(b, x509.SubjectAlternativeName)


@dataclass
class _ChainBuilder:
    opts: VerifyOptions
    sig_checks: int = 0

    def build(self, chain: list[x509.Certificate]) -> list[list[x509.Certificate]]:
        """Go's `buildChains`, including its error precedence.

        Go keeps one `err` per level that the last candidate to pass its signature check
        overwrites (validity failure, or the result of recursing through an intermediate). So an
        expired or path-length-violating CA surfaces as that error itself, while a candidate that
        fails only its signature check leaves just a hint for `UnknownAuthorityError`.
        """
        cert = chain[-1]
        chains: list[list[x509.Certificate]] = []
        err: VerifyError | None = None
        hint_err: VerifyError | None = None
        hint_cert: x509.Certificate | None = None

        def consider(cert_type: str, candidate: x509.Certificate) -> None:
            nonlocal err, hint_err, hint_cert
            if any(_same_identity(candidate, c) for c in chain):
                return
            self.sig_checks += 1
            if self.sig_checks > MAX_CHAIN_SIGNATURE_CHECKS:
                err = ChainLimitError()
                return
            try:
                _check_signature_from(cert, candidate)
            except VerifyError as e:
                if hint_err is None:
                    hint_err, hint_cert = e, candidate
                return
            try:
                _is_valid(candidate, cert_type, chain, self.opts)
            except VerifyError as e:
                err = e
                if hint_err is None:
                    hint_err, hint_cert = e, candidate
                return
            err = None
            if cert_type == _ROOT:
                chains.append([*chain, candidate])
                return
            try:
                chains.extend(self.build([*chain, candidate]))
            except VerifyError as e:
                err = e

        for root in self.opts.roots.find_potential_parents(cert):
            consider(_ROOT, root)
        for intermediate in self.opts.intermediates.find_potential_parents(cert):
            consider(_INTERMEDIATE, intermediate)

        if chains:
            return chains
        if err is not None:
            raise err
        raise UnknownAuthorityError(cert, hint_err, hint_cert)


def _check_chain_for_key_usage(
    chain: Sequence[x509.Certificate], key_usages: Sequence[x509.ObjectIdentifier]
) -> bool:
    """Go's `checkChainForKeyUsage`.

    Walking from the root down, every certificate that carries an EKU extension (and not
    anyExtendedKeyUsage) crosses out the requested usages it lacks; no EKU extension at all means
    "any usage". The chain fails once every requested usage is crossed out.
    """
    remaining = list(key_usages)
    for cert in reversed(chain):
        usages = _ext_key_usages(cert)
        if not usages or ANY_EXTENDED_KEY_USAGE in usages:
            continue
        remaining = [u for u in remaining if u in usages]
        if not remaining:
            return False
    return True


def verify(leaf: x509.Certificate, opts: VerifyOptions) -> list[list[x509.Certificate]]:
    """Go's `(*Certificate).Verify`: all valid chains leaf->root, or raise VerifyError."""
    _is_valid(leaf, _LEAF, [], opts)
    # A leaf that is itself a trusted root is its own chain (Go: `opts.Roots.contains(c)`).
    candidates = [[leaf]] if opts.roots.contains(leaf) else _ChainBuilder(opts).build([leaf])
    key_usages = opts.key_usages or (ExtendedKeyUsageOID.SERVER_AUTH,)
    if ANY_EXTENDED_KEY_USAGE in key_usages:
        return candidates
    chains = [c for c in candidates if _check_chain_for_key_usage(c, key_usages)]
    if not chains:
        raise CertificateInvalidError(leaf, "IncompatibleUsage")
    return chains


def verify_peer_chain(
    peer_chain: Sequence[x509.Certificate],
    roots: CertPool,
    *,
    now: datetime.datetime | None = None,
) -> list[list[x509.Certificate]]:
    """What x509.go does with `req.TLS.PeerCertificates`: leaf = [0], intermediates = [1:]."""
    if not peer_chain:
        raise ValueError("no peer certificates")
    opts = VerifyOptions(
        roots=roots,
        intermediates=CertPool(list(peer_chain[1:])),
        key_usages=(CLIENT_AUTH,),
        current_time=now,
    )
    return verify(peer_chain[0], opts)


def verify_subject(cert: x509.Certificate, allowed_common_names: Iterable[str]) -> None:
    """`(*Verifier).verifySubject`: exact, case-sensitive CN match; empty list allows all."""
    allowed = list(allowed_common_names)
    if not allowed:
        return
    cn = common_name(cert)
    if cn in allowed:
        return
    raise VerifyError(f"x509: subject with cn={cn} is not in the allowed list")
