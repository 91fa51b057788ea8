"""The authenticator chain's combination rules (tests/emulator/authn.py), without TLS."""

from __future__ import annotations

import pytest

from tests.emulator.api import API, Request, request_info
from tests.emulator.authn import (
    ANONYMOUS_INFO,
    AuthenticationChain,
    add_authenticated_group,
    aggregate_error,
    build_chain,
)
from tests.emulator.requestheader import RequestHeaderAuthenticator, UserInfo
from tests.emulator.x509verify import CertPool
from tests.support.certificates import CertKey, issue, make_ca

HEADERS = RequestHeaderAuthenticator.new(
    ["X-Remote-User"], ["X-Remote-Uid"], ["X-Remote-Group"], ["X-Remote-Extra-"]
)


@pytest.fixture(scope="module")
def cas() -> tuple[CertKey, CertKey]:
    return make_ca("kubernetes"), make_ca("front-proxy-ca")


def kubeadm_chain(cas: tuple[CertKey, CertKey], *, anonymous: bool = True) -> AuthenticationChain:
    cluster, front_proxy = cas
    return build_chain(
        requestheader_client_ca=CertPool([front_proxy.cert]),
        requestheader_allowed_names=["front-proxy-client"],
        requestheader=HEADERS,
        client_ca=CertPool([cluster.cert]),
        anonymous=anonymous,
    )


def test_aggregate_error_formatting() -> None:
    assert aggregate_error([]) is None
    assert aggregate_error(["a"]) == "a"
    assert aggregate_error(["a", "a"]) == "a"
    assert aggregate_error(["a", "b", "a"]) == "[a, b]"


def test_authenticated_group_adder_rules() -> None:
    assert add_authenticated_group(UserInfo("u", groups=("g",))).groups == (
        "g",
        "system:authenticated",
    )
    assert add_authenticated_group(ANONYMOUS_INFO) == ANONYMOUS_INFO
    assert add_authenticated_group(UserInfo("system:anonymous")).groups == ()
    for marker in ("system:authenticated", "system:unauthenticated"):
        assert add_authenticated_group(UserInfo("u", groups=(marker, "g"))).groups == (marker, "g")


def test_a_later_success_outweighs_earlier_errors(cas: tuple[CertKey, CertKey]) -> None:
    cluster, _ = cas
    jane = issue(cluster, "jane", organizations=["ops"]).cert
    result = kubeadm_chain(cas).authenticate([("X-Remote-User", "admin")], [jane])
    assert result.authenticator == "x509"
    assert result.user is not None and result.user.name == "jane"
    # The filter clears identity headers after any success.
    assert result.headers == []


def test_an_error_is_final_even_with_anonymous_on(cas: tuple[CertKey, CertKey]) -> None:
    stranger = issue(make_ca("stranger"), "front-proxy-client").cert
    result = kubeadm_chain(cas).authenticate([("X-Remote-User", "alice")], [stranger])
    assert result.user is None
    assert result.error is not None and result.error.startswith("[x509: certificate signed by")


def test_no_credentials_is_anonymous_and_headers_are_still_cleared(
    cas: tuple[CertKey, CertKey],
) -> None:
    headers = [("X-Remote-User", "alice"), ("Accept", "*/*"), ("X-Remote-Extra-A", "b")]
    result = kubeadm_chain(cas).authenticate(headers)
    assert result.user == ANONYMOUS_INFO
    assert result.headers == [("Accept", "*/*")]
    assert kubeadm_chain(cas, anonymous=False).authenticate(headers).user is None


def test_proxy_can_declare_a_user_unauthenticated(cas: tuple[CertKey, CertKey]) -> None:
    _, front_proxy = cas
    proxy = issue(front_proxy, "front-proxy-client").cert
    result = kubeadm_chain(cas).authenticate(
        [("X-Remote-User", "guest"), ("X-Remote-Group", "system:unauthenticated")], [proxy]
    )
    assert result.user == UserInfo("guest", groups=("system:unauthenticated",))
    # Without system:authenticated only public information is readable.
    api = API()
    assert api.handle(Request("GET", "/version"), result.user).status == 200
    assert api.handle(Request("GET", "/api/v1/pods"), result.user).status == 403


def test_without_a_requestheader_ca_headers_are_never_identity(
    cas: tuple[CertKey, CertKey],
) -> None:
    _, front_proxy = cas
    chain = build_chain(requestheader_client_ca=None, client_ca=CertPool([cas[0].cert]))
    proxy = issue(front_proxy, "front-proxy-client").cert
    result = chain.authenticate([("X-Remote-User", "alice")], [proxy])
    assert result.user is None
    assert result.error is not None and "unknown authority" in result.error


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", "/api/v1/namespaces/default/pods", {}, ("list", "pods", "default", "")),
        ("GET", "/api/v1/pods", {"watch": ["true"]}, ("watch", "pods", "", "")),
        ("GET", "/api/v1/pods", {"watch": ["0"]}, ("list", "pods", "", "")),
        ("GET", "/api/v1/namespaces/default/pods/p/log", {}, ("get", "pods", "default", "p")),
        ("GET", "/api/v1/namespaces/default", {}, ("get", "namespaces", "default", "default")),
        ("DELETE", "/api/v1/namespaces/default/pods", {}, ("deletecollection", "pods",
                                                           "default", "")),
        ("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", {},
         ("create", "selfsubjectreviews", "", "")),
        ("GET", "/api/v1/watch/pods", {}, ("watch", "pods", "", "")),
    ],
)  # fmt: skip
def test_request_info(
    method: str, path: str, query: dict[str, list[str]], expected: tuple[str, str, str, str]
) -> None:
    info = request_info(method, path, query)
    assert info.is_resource_request
    assert (info.verb, info.resource, info.namespace, info.name) == expected


def test_non_resource_request_info() -> None:
    for path in ("/", "/api", "/api/v1", "/apis/authentication.k8s.io/v1", "/healthz/etcd"):
        info = request_info("HEAD", path, {})
        assert not info.is_resource_request
        assert info.verb == "head"
