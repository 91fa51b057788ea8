"""Client-certificate verification with Go crypto/x509 semantics (tests/emulator/x509verify.py)."""

from __future__ import annotations

import datetime
import re

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.emulator.x509verify import (
    CertificateInvalidError,
    CertPool,
    UnknownAuthorityError,
    VerifyError,
    certificate_identifier,
    parse_certs_pem,
    verify_peer_chain,
    verify_subject,
)
from tests.support.certificates import CertKey, cross_sign, custom_cert, issue, make_ca, now

CLIENT = ExtendedKeyUsageOID.CLIENT_AUTH
SERVER = ExtendedKeyUsageOID.SERVER_AUTH
ANY = ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE


@pytest.fixture(scope="module")
def front_proxy_ca() -> CertKey:
    return make_ca("front-proxy-ca")


@pytest.fixture(scope="module")
def roots(front_proxy_ca: CertKey) -> CertPool:
    return CertPool([front_proxy_ca.cert])


def verify(leaf: CertKey, roots: CertPool, *intermediates: CertKey) -> int:
    """Number of verified chains; raises VerifyError like Go."""
    return len(verify_peer_chain([leaf.cert, *(i.cert for i in intermediates)], roots))


def test_client_auth_leaf_from_the_ca_verifies(front_proxy_ca: CertKey, roots: CertPool) -> None:
    assert verify(issue(front_proxy_ca, "front-proxy-client", usages=("client",)), roots) == 1


def test_leaf_without_eku_is_valid_for_any_usage(front_proxy_ca: CertKey, roots: CertPool) -> None:
    assert verify(issue(front_proxy_ca, "front-proxy-client", usages=()), roots) == 1


def test_any_extended_key_usage_counts_as_client_auth(
    front_proxy_ca: CertKey, roots: CertPool
) -> None:
    assert verify(custom_cert(front_proxy_ca, "c", ekus=[ANY]), roots) == 1


def test_server_auth_only_leaf_is_rejected(front_proxy_ca: CertKey, roots: CertPool) -> None:
    leaf = issue(front_proxy_ca, "front-proxy-client", usages=("server",))
    with pytest.raises(CertificateInvalidError) as info:
        verify(leaf, roots)
    assert str(info.value) == "x509: certificate specifies an incompatible key usage"


def test_client_and_server_eku_verifies(front_proxy_ca: CertKey, roots: CertPool) -> None:
    assert verify(issue(front_proxy_ca, "c", usages=("server", "client")), roots) == 1


def test_wrong_ca_is_an_unknown_authority(roots: CertPool) -> None:
    other = make_ca("front-proxy-ca")  # same name, different key
    with pytest.raises(UnknownAuthorityError) as info:
        verify(issue(other, "front-proxy-client"), roots)
    assert str(info.value) == (
        'x509: certificate signed by unknown authority (possibly because of "x509: ECDSA'
        ' verification failure" while trying to verify candidate authority certificate'
        ' "front-proxy-ca")'
    )


def test_unrelated_ca_gives_the_plain_unknown_authority_error(roots: CertPool) -> None:
    with pytest.raises(UnknownAuthorityError) as info:
        verify(issue(make_ca("somebody-else"), "front-proxy-client"), roots)
    assert str(info.value) == "x509: certificate signed by unknown authority"


def test_expired_leaf_is_rejected(front_proxy_ca: CertKey, roots: CertPool) -> None:
    start = now() - datetime.timedelta(days=10)
    leaf = issue(
        front_proxy_ca, "c", not_before=start, not_after=start + datetime.timedelta(days=1)
    )
    with pytest.raises(CertificateInvalidError) as info:
        verify(leaf, roots)
    assert re.fullmatch(
        r"x509: certificate has expired or is not yet valid: current time \S+Z is after \S+Z",
        str(info.value),
    )


def test_not_yet_valid_leaf_is_rejected(front_proxy_ca: CertKey, roots: CertPool) -> None:
    start = now() + datetime.timedelta(days=1)
    leaf = issue(
        front_proxy_ca, "c", not_before=start, not_after=start + datetime.timedelta(days=1)
    )
    with pytest.raises(CertificateInvalidError, match=r"current time \S+ is before \S+$"):
        verify(leaf, roots)


def test_expired_root_is_the_error() -> None:
    start = now() - datetime.timedelta(days=10)
    root = custom_cert(None, "old-ca", ca=True, ekus=None, key_cert_sign=True, not_before=start,
                       not_after=start + datetime.timedelta(days=1))  # fmt: skip
    # Go's buildChains returns the CA's validity error itself, not "unknown authority".
    with pytest.raises(CertificateInvalidError) as info:
        verify(issue(root, "c"), CertPool([root.cert]))
    assert str(info.value).startswith(
        "x509: certificate has expired or is not yet valid: current time"
    )


def test_cn_not_in_the_allowed_list(front_proxy_ca: CertKey) -> None:
    leaf = issue(front_proxy_ca, "Front-Proxy-Client").cert
    with pytest.raises(VerifyError) as info:
        verify_subject(leaf, ["front-proxy-client"])
    assert str(info.value) == "x509: subject with cn=Front-Proxy-Client is not in the allowed list"
    verify_subject(leaf, ["other", "Front-Proxy-Client"])


def test_empty_allowed_list_accepts_any_cn(front_proxy_ca: CertKey) -> None:
    verify_subject(issue(front_proxy_ca, "whoever").cert, [])


def test_allowed_names_ignore_sans_and_organization(front_proxy_ca: CertKey) -> None:
    leaf = issue(front_proxy_ca, "x", organizations=["front-proxy-client"],
                 dns_names=["front-proxy-client"]).cert  # fmt: skip
    with pytest.raises(VerifyError):
        verify_subject(leaf, ["front-proxy-client"])


def test_intermediate_from_the_peer_chain(front_proxy_ca: CertKey, roots: CertPool) -> None:
    intermediate = issue(front_proxy_ca, "intermediate-ca", is_ca=True, usages=())
    leaf = issue(intermediate, "front-proxy-client")
    assert verify(leaf, roots, intermediate) == 1
    with pytest.raises(UnknownAuthorityError):
        verify(leaf, roots)  # without the intermediate there is no path


def test_intermediate_that_is_not_a_ca_cannot_sign(
    front_proxy_ca: CertKey, roots: CertPool
) -> None:
    not_ca = issue(front_proxy_ca, "not-a-ca", usages=())
    leaf = issue(not_ca, "front-proxy-client")
    with pytest.raises(UnknownAuthorityError) as info:
        verify(leaf, roots, not_ca)
    assert "parent certificate cannot sign this kind of certificate" in str(info.value)


def test_intermediate_eku_restricts_the_whole_chain(
    front_proxy_ca: CertKey, roots: CertPool
) -> None:
    server_only = issue(front_proxy_ca, "server-only-ca", is_ca=True, usages=("server",))
    with pytest.raises(CertificateInvalidError, match="incompatible key usage"):
        verify(issue(server_only, "c", usages=()), roots, server_only)
    client_ca = issue(front_proxy_ca, "client-ca", is_ca=True, usages=("client",))
    assert verify(issue(client_ca, "c", usages=()), roots, client_ca) == 1


def test_path_length_constraint(front_proxy_ca: CertKey) -> None:
    root = custom_cert(None, "root", ca=True, path_length=0, ekus=None, key_cert_sign=True)
    intermediate = custom_cert(root, "intermediate", ca=True, ekus=None, key_cert_sign=True)
    leaf = custom_cert(intermediate, "leaf")
    with pytest.raises(CertificateInvalidError) as info:
        verify(leaf, CertPool([root.cert]), intermediate)
    assert str(info.value) == "x509: too many intermediates for path length constraint"


def test_v3_root_without_basic_constraints_cannot_sign() -> None:
    root = custom_cert(None, "bare-root", ca=None, ekus=None)
    with pytest.raises(UnknownAuthorityError, match="parent certificate cannot sign"):
        verify(custom_cert(root, "leaf"), CertPool([root.cert]))


def test_root_whose_key_usage_lacks_cert_sign_cannot_sign() -> None:
    root = custom_cert(None, "no-certsign-root", ca=True, ekus=None, key_cert_sign=False)
    with pytest.raises(UnknownAuthorityError, match="parent certificate cannot sign"):
        verify(custom_cert(root, "leaf"), CertPool([root.cert]))


def test_unhandled_critical_extension_fails() -> None:
    ca = make_ca("ca")
    leaf = custom_cert(ca, "leaf", critical_unknown_extension=True)
    with pytest.raises(VerifyError, match=r"^x509: unhandled critical extension$"):
        verify(leaf, CertPool([ca.cert]))


def test_leaf_that_is_itself_a_root_verifies() -> None:
    self_signed = custom_cert(None, "self", ca=False)
    assert verify(self_signed, CertPool([self_signed.cert])) == 1


def test_bundle_with_several_roots(front_proxy_ca: CertKey) -> None:
    other = make_ca("other-ca")
    pool = CertPool.from_pem(other.cert_pem() + b"junk\n" + front_proxy_ca.cert_pem())
    assert len(pool) == 2
    assert verify(issue(front_proxy_ca, "a"), pool) == 1
    assert verify(issue(other, "b"), pool) == 1


def test_bundle_without_certificates_is_an_error() -> None:
    with pytest.raises(ValueError, match="does not contain any valid"):
        parse_certs_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")


def test_cross_signed_intermediate_yields_every_chain(front_proxy_ca: CertKey) -> None:
    second_root = make_ca("second-root")
    intermediate = issue(front_proxy_ca, "intermediate", is_ca=True, usages=())
    cross = cross_sign(intermediate, second_root)
    leaf = issue(intermediate, "leaf")
    pool = CertPool([front_proxy_ca.cert, second_root.cert])
    chains = verify_peer_chain([leaf.cert, intermediate.cert, cross.cert], pool)
    assert sorted(chain[-1].subject.rfc4514_string() for chain in chains) == [
        "CN=front-proxy-ca",
        "CN=second-root",
    ]
    # Either path alone is enough.
    assert len(verify_peer_chain([leaf.cert, cross.cert], CertPool([second_root.cert]))) == 1


def test_certificate_identifier_format(front_proxy_ca: CertKey) -> None:
    leaf = issue(front_proxy_ca, "x").cert
    ident = certificate_identifier(leaf)
    assert re.fullmatch(r"SN=\d+, SKID=([0-9A-F]{2}:)+[0-9A-F]{2}, AKID=([0-9A-F]{2}:)+[0-9A-F]{2}",
                        ident)  # fmt: skip
