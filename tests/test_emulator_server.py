"""End to end over real TLS: raw HTTPS requests against an in-process emulator (kubeadm layout).

kubeadm layout: --client-ca-file is the cluster CA, --requestheader-client-ca-file is the separate
front-proxy CA, --requestheader-allowed-names=front-proxy-client, anonymous auth on.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from pathlib import Path

import pytest

from tests.emulator import EmulatorServer, load_request_log
from tests.support.api_paths import SSR
from tests.support.certificates import custom_cert, issue
from tests.support.emulator_pki import (
    FRONT_PROXY_CN,
    EmulatorPKI,
    client_context,
    kubeadm_config,
    request,
)
from tests.support.http1 import H1Response

UNAUTHORIZED_BODY = (
    b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
    b'"message":"Unauthorized","reason":"Unauthorized","code":401}\n'
)


@pytest.fixture(scope="module")
def server(emulator_server: EmulatorServer) -> EmulatorServer:
    return emulator_server


@pytest.fixture(scope="module")
def pki(emulator_pki: EmulatorPKI) -> EmulatorPKI:
    return emulator_pki


@pytest.fixture(scope="module")
def proxy_cert(pki: EmulatorPKI) -> tuple[Path, Path]:
    return pki.path("front-proxy-client.crt"), pki.path("front-proxy-client.key")


def whoami(response: H1Response) -> dict[str, object]:
    assert response.status == 201, response.body
    review = json.loads(response.body)
    assert review["kind"] == "SelfSubjectReview"
    assert review["apiVersion"] == "authentication.k8s.io/v1"
    info: dict[str, object] = review["status"]["userInfo"]
    return info


def last_record(server: EmulatorServer) -> dict[str, object]:
    return dict(server.records()[-1])


# --- (a) no client certificate ------------------------------------------------------------------


def test_no_cert_ignores_identity_headers_and_is_anonymous(
    server: EmulatorServer, pki: EmulatorPKI
) -> None:
    spoof = [("X-Remote-User", "admin"), ("X-Remote-Group", "system:masters")]
    forbidden = request(server, pki, "GET", "/api/v1/namespaces/default/pods", spoof)
    assert forbidden.status == 403
    assert forbidden.header("Content-Type") == "application/json"
    assert json.loads(forbidden.body) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods is forbidden: User "system:anonymous" cannot list resource "pods" in'
        ' API group "" in the namespace "default"',
        "reason": "Forbidden",
        "details": {"kind": "pods"},
        "code": 403,
    }
    record = last_record(server)
    assert record["authentication"] == {
        "authenticated": True,
        "authenticator": "anonymous",
        "user": {
            "username": "system:anonymous",
            "uid": "",
            "groups": ["system:unauthenticated"],
            "extra": {},
        },
        "error": None,
    }
    assert record["peer_cert_cn"] is None and record["peer_chain_len"] == 0

    version = request(server, pki, "GET", "/version", spoof)
    assert version.status == 200
    assert json.loads(version.body)["gitVersion"].startswith("v1.32.")
    for path in ("/healthz", "/livez", "/readyz"):
        health = request(server, pki, "GET", path)
        assert (health.status, health.body) == (200, b"ok")


def test_anonymous_cannot_discover_or_review_itself(
    server: EmulatorServer, pki: EmulatorPKI
) -> None:
    api = request(server, pki, "GET", "/api")
    assert api.status == 403
    assert json.loads(api.body)["message"] == (
        'forbidden: User "system:anonymous" cannot get path "/api"'
    )
    review = request(server, pki, "POST", SSR, body=b"{}")
    assert review.status == 403
    assert json.loads(review.body)["message"] == (
        'selfsubjectreviews.authentication.k8s.io is forbidden: User "system:anonymous" cannot'
        ' create resource "selfsubjectreviews" in API group "authentication.k8s.io" at the'
        " cluster scope"
    )


# --- (b) the front-proxy certificate with identity headers ---------------------------------------


def test_front_proxy_identity_reaches_self_subject_review(
    server: EmulatorServer, pki: EmulatorPKI, proxy_cert: tuple[Path, Path]
) -> None:
    headers = [
        ("X-Remote-User", "alice"),
        ("X-Remote-Uid", "1001"),
        ("X-Remote-Group", "developers"),
        ("X-Remote-Group", "viewers"),
        ("X-Remote-Extra-Scopes", "view"),
        ("X-Remote-Extra-Scopes", "edit"),
        ("Content-Type", "application/json"),
    ]
    info = whoami(request(server, pki, "POST", SSR, headers, cert=proxy_cert, body=b"{}"))
    assert info == {
        "username": "alice",
        "uid": "1001",
        "groups": ["developers", "viewers", "system:authenticated"],
        "extra": {"scopes": ["view", "edit"]},
    }
    record = last_record(server)
    assert record["peer_cert_cn"] == FRONT_PROXY_CN
    assert record["authentication"]["authenticator"] == "requestheader"  # type: ignore[index]


def test_proxied_user_can_list_pods(
    server: EmulatorServer, pki: EmulatorPKI, proxy_cert: tuple[Path, Path]
) -> None:
    response = request(
        server, pki, "GET", "/api/v1/namespaces/default/pods", [("X-Remote-User", "alice")],
        cert=proxy_cert,
    )  # fmt: skip
    assert response.status == 200
    names = [p["metadata"]["name"] for p in json.loads(response.body)["items"]]
    assert names == ["nginx-1", "nginx-2"]


# --- (c) front-proxy certificate without a username ----------------------------------------------


def test_front_proxy_cert_without_username_is_401_in_kubeadm_layout(
    server: EmulatorServer, pki: EmulatorPKI, proxy_cert: tuple[Path, Path]
) -> None:
    for headers in ([], [("X-Remote-User", "")], [("X-Remote-Group", "system:masters")]):
        response = request(server, pki, "GET", "/api/v1/pods", headers, cert=proxy_cert)
        assert response.status == 401
        assert response.body == UNAUTHORIZED_BODY
        assert len(response.body) == 129
        assert response.header("Content-Type") == "application/json"
        assert response.header("Cache-Control") == "no-cache, private"
        assert response.header("Content-Length") == "129"
        auth = last_record(server)["authentication"]
        assert auth["authenticated"] is False  # type: ignore[index]
        # requestheader abstained; the x509 authenticator rejected the front-proxy CA.
        assert "x509: certificate signed by unknown authority" in auth["error"]  # type: ignore[index]
        assert auth["error"].startswith("verifying certificate SN=")  # type: ignore[index]


# --- (d) certificates the front-proxy CA does not vouch for --------------------------------------


def test_cert_from_another_ca_is_401_not_anonymous(
    server: EmulatorServer, pki: EmulatorPKI
) -> None:
    stranger = pki.write(issue(pki.other_ca, FRONT_PROXY_CN), "stranger")
    response = request(server, pki, "GET", "/version", [("X-Remote-User", "alice")], cert=stranger)
    assert (response.status, response.body) == (401, UNAUTHORIZED_BODY)
    error = last_record(server)["authentication"]["error"]  # type: ignore[index]
    # Both certificate authenticators failed: an aggregate of two errors.
    assert error.startswith("[x509: certificate signed by unknown authority, verifying certificate")


def test_cn_not_in_allowed_names_is_401(server: EmulatorServer, pki: EmulatorPKI) -> None:
    wrong_cn = pki.write(issue(pki.front_proxy_ca, "Front-Proxy-Client"), "wrong-cn")
    response = request(server, pki, "GET", "/version", [("X-Remote-User", "alice")], cert=wrong_cn)
    assert (response.status, response.body) == (401, UNAUTHORIZED_BODY)
    error = last_record(server)["authentication"]["error"]  # type: ignore[index]
    assert error.startswith(
        "[x509: subject with cn=Front-Proxy-Client is not in the allowed list, "
    )


def test_server_auth_only_proxy_cert_is_401(server: EmulatorServer, pki: EmulatorPKI) -> None:
    server_only = pki.write(
        issue(pki.front_proxy_ca, FRONT_PROXY_CN, usages=("server",)), "server-only"
    )
    response = request(server, pki, "GET", "/version", [("X-Remote-User", "a")], cert=server_only)
    assert response.status == 401
    assert "incompatible key usage" in last_record(server)["authentication"]["error"]  # type: ignore[index]


def test_proxy_cert_through_an_intermediate(server: EmulatorServer, pki: EmulatorPKI) -> None:
    intermediate = issue(pki.front_proxy_ca, "front-proxy-intermediate", is_ca=True, usages=())
    leaf = issue(intermediate, FRONT_PROXY_CN)
    chain = pki.write_chain([leaf, intermediate], "via-intermediate")
    info = whoami(request(server, pki, "POST", SSR, [("X-Remote-User", "bob")], cert=chain))
    assert info["username"] == "bob"
    assert last_record(server)["peer_chain_len"] == 2


# --- client certificates for the x509 authenticator ----------------------------------------------


def test_cluster_client_cert_is_cn_and_o_and_headers_are_ignored(
    server: EmulatorServer, pki: EmulatorPKI
) -> None:
    jane = pki.write(issue(pki.cluster_ca, "jane", organizations=["devs", "ops"]), "jane")
    info = whoami(request(server, pki, "POST", SSR, [("X-Remote-User", "admin")], cert=jane))
    assert info["username"] == "jane"
    assert info["groups"] == ["devs", "ops", "system:authenticated"]
    extra = info["extra"]
    assert isinstance(extra, dict)
    assert list(extra) == ["authentication.kubernetes.io/credential-id"]
    assert extra["authentication.kubernetes.io/credential-id"][0].startswith("X509SHA256=")


# --- (e) (f) header semantics end to end ---------------------------------------------------------


def test_group_with_a_comma_stays_one_group(
    server: EmulatorServer, pki: EmulatorPKI, proxy_cert: tuple[Path, Path]
) -> None:
    headers = [("X-Remote-User", "u"), ("X-Remote-Group", "a,b"), ("x-remote-group", "c")]
    info = whoami(request(server, pki, "POST", SSR, headers, cert=proxy_cert))
    assert info["groups"] == ["a,b", "c", "system:authenticated"]


def test_extra_keys_are_lowercased_then_unescaped(
    server: EmulatorServer, pki: EmulatorPKI, proxy_cert: tuple[Path, Path]
) -> None:
    headers = [
        ("X-Remote-User", "u"),
        ("X-Remote-Extra-Acme.com%2FProject", "payments"),
        ("X-Remote-Extra-Percent%2520Encoded", "x"),
        ("X-Remote-Extra-Bad%zzEscape", "kept"),
        ("X-Remote-Extra-Unicode%E4%BB%8A", "今"),
        ("X-Remote-Extra-Empty", ""),
    ]
    info = whoami(request(server, pki, "POST", SSR, headers, cert=proxy_cert))
    assert info["extra"] == {
        "acme.com/project": ["payments"],
        "bad%zzescape": ["kept"],
        "empty": [""],
        "percent%20encoded": ["x"],
        "unicode今": ["今"],
    }


def test_empty_first_username_value_means_no_username(
    server: EmulatorServer, pki: EmulatorPKI, proxy_cert: tuple[Path, Path]
) -> None:
    headers = [("X-Remote-User", ""), ("X-Remote-User", "second"), ("X-Remote-Uid", "7")]
    response = request(server, pki, "POST", SSR, headers, cert=proxy_cert)
    # Header.Get sees only the empty first value: requestheader abstains, then x509 fails.
    assert (response.status, response.body) == (401, UNAUTHORIZED_BODY)


# --- (g) the request log --------------------------------------------------------------------------


def test_request_log_records_raw_headers_exactly(
    server: EmulatorServer, pki: EmulatorPKI, proxy_cert: tuple[Path, Path]
) -> None:
    headers = [
        ("x-remote-user", "alice"),
        ("X-REMOTE-GROUP", "a,b"),
        ("X-Remote-Group", ""),
        ("X-Remote-Group", "  padded  "),
        ("X-Remote-Extra-K", "v1"),
        ("x-remote-extra-k", "v2"),
        ("Accept", "application/json"),
        ("X-Unicode", "pässword"),
    ]
    request(server, pki, "GET", "/api/v1/pods?limit=500&x=%2F", headers, cert=proxy_cert)
    assert server.request_log.path is not None
    record = load_request_log(server.request_log.path)[-1]
    assert record == server.records()[-1]
    assert record["method"] == "GET"
    assert record["path"] == "/api/v1/pods?limit=500&x=%2F"
    assert record["http_version"] == "HTTP/1.1"
    # Host comes first from http.client; everything else exactly as sent (values trimmed of
    # surrounding whitespace, as HTTP defines field values).
    assert record["headers"] == [
        ["Host", f"{server.host}:{server.port}"],
        *([n, v.strip()] for n, v in headers),
    ]
    assert record["peer_cert_cn"] == FRONT_PROXY_CN
    assert record["peer_chain_len"] == 1
    assert record["status"] == 200
    assert record["authentication"] == {
        "authenticated": True,
        "authenticator": "requestheader",
        "user": {
            "username": "alice",
            "uid": "",
            "groups": ["a,b", "padded", "system:authenticated"],
            "extra": {"k": ["v1", "v2"]},
        },
        "error": None,
    }
    assert record["alpn"] == "http/1.1"
    assert record["tls_version"] in ("TLSv1.2", "TLSv1.3")


# --- API details -------------------------------------------------------------------------------


def test_table_for_kubectl_get(
    server: EmulatorServer, pki: EmulatorPKI, proxy_cert: tuple[Path, Path]
) -> None:
    accept = (
        "application/json;as=Table;v=v1;g=meta.k8s.io,"
        "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
    )
    response = request(
        server, pki, "GET", "/api/v1/namespaces/default/pods?limit=500",
        [("X-Remote-User", "u"), ("Accept", accept)], cert=proxy_cert,
    )  # fmt: skip
    assert response.status == 200
    assert response.header("Content-Type") == "application/json;as=Table;v=v1;g=meta.k8s.io"
    table = json.loads(response.body)
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    columns = [c["name"] for c in table["columnDefinitions"] if c["priority"] == 0]
    assert columns == ["Name", "Ready", "Status", "Restarts", "Age"]
    assert [r["cells"][:4] for r in table["rows"]] == [
        ["nginx-1", "1/1", "Running", "0"],
        ["nginx-2", "1/1", "Running", "0"],
    ]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


def test_not_found_and_unknown_paths(
    server: EmulatorServer, pki: EmulatorPKI, proxy_cert: tuple[Path, Path]
) -> None:
    auth = [("X-Remote-User", "u")]
    missing = request(server, pki, "GET", "/api/v1/namespaces/default/pods/nope", auth,
                      cert=proxy_cert)  # fmt: skip
    assert missing.status == 404
    assert json.loads(missing.body) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'pods "nope" not found', "reason": "NotFound",
        "details": {"name": "nope", "kind": "pods"}, "code": 404,
    }  # fmt: skip
    unknown = request(server, pki, "GET", "/api/v1/widgets", auth, cert=proxy_cert)
    assert unknown.status == 404
    assert json.loads(unknown.body)["reason"] == "NotFound"
    outside = request(server, pki, "GET", "/no/such/path", auth, cert=proxy_cert)
    assert (outside.status, outside.body) == (404, b"404 page not found\n")


def test_discovery_documents(
    server: EmulatorServer, pki: EmulatorPKI, proxy_cert: tuple[Path, Path]
) -> None:
    auth = [("X-Remote-User", "u")]
    groups = json.loads(request(server, pki, "GET", "/apis", auth, cert=proxy_cert).body)
    assert groups["kind"] == "APIGroupList"
    assert [g["name"] for g in groups["groups"]] == ["authentication.k8s.io"]
    resources = json.loads(
        request(server, pki, "GET", "/apis/authentication.k8s.io/v1", auth, cert=proxy_cert).body
    )
    [ssr] = resources["resources"]
    assert (ssr["name"], ssr["verbs"]) == ("selfsubjectreviews", ["create"])
    core = json.loads(request(server, pki, "GET", "/api/v1", auth, cert=proxy_cert).body)
    assert {"pods", "namespaces"} <= {r["name"] for r in core["resources"]}
    aggregated = request(
        server, pki, "GET", "/apis",
        [*auth, ("Accept", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
                            ",application/json")],
        cert=proxy_cert,
    )  # fmt: skip
    assert aggregated.header("Content-Type") == (
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    )
    assert json.loads(aggregated.body)["kind"] == "APIGroupDiscoveryList"


# --- HTTP behaviour -----------------------------------------------------------------------------


def _raw_exchange(server: EmulatorServer, pki: EmulatorPKI, data: bytes) -> bytes:
    context = client_context(pki)
    with (
        socket.create_connection((server.host, server.port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        tls.sendall(data)
        chunks = []
        while True:
            try:
                chunk = tls.recv(65536)
            except (ssl.SSLError, OSError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def test_keep_alive_and_connection_close(server: EmulatorServer, pki: EmulatorPKI) -> None:
    two = (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    reply = _raw_exchange(server, pki, two)
    first, second = reply.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert first.endswith(b"\r\n\r\nok") and b"Connection: close" not in first
    assert second.endswith(b"\r\n\r\nok") and b"Connection: close\r\n" in second


def test_malformed_request_gets_go_style_400(server: EmulatorServer, pki: EmulatorPKI) -> None:
    reply = _raw_exchange(server, pki, b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert reply.endswith(b"\r\n\r\n400 Bad Request")
    reply = _raw_exchange(server, pki, b"GET / HTTP/1.1\r\n\r\n")
    assert reply.endswith(b"400 Bad Request: missing required Host header")


def test_chunked_trailers_are_logged(server: EmulatorServer, pki: EmulatorPKI) -> None:
    before = len(server.records())
    reply = _raw_exchange(server, pki, b"POST /version HTTP/1.1\r\nHost: x\r\nConnection: close"
                          b"\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n"
                          b"X-Remote-User: admin\r\nAuthorization:  Bearer t \r\n\r\n")  # fmt: skip
    assert reply.startswith(b"HTTP/1.1 ")
    [record] = server.records()[before:]
    assert record["trailers"] == [["X-Remote-User", "admin"], ["Authorization", "Bearer t"]]
    assert record["body_length"] == 2


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], ["127.0.0.1"]),
        ([("X-Forwarded-For", "10.0.0.1, bogus,10.0.0.2"), ("X-Forwarded-For", "10.9.9.9")],
         ["10.0.0.1", "10.0.0.2", "127.0.0.1"]),
        ([("X-Real-Ip", "10.0.0.3")], ["10.0.0.3", "127.0.0.1"]),
        ([("X-Forwarded-For", "10.0.0.3"), ("X-Real-Ip", "10.0.0.3")], ["10.0.0.3", "127.0.0.1"]),
        ([("X-Forwarded-For", "127.0.0.1")], ["127.0.0.1"]),
        ([("X-Forwarded-For", "::1, 10.0.0.4")], ["::1", "10.0.0.4", "127.0.0.1"]),
    ],
)  # fmt: skip
def test_source_ips_are_what_the_api_servers_audit_records(
    server: EmulatorServer, pki: EmulatorPKI, headers: list[tuple[str, str]], expected: list[str]
) -> None:
    request(server, pki, "GET", "/version", headers)
    assert server.records()[-1]["source_ips"] == expected


def test_client_disconnecting_mid_request_does_not_hurt(
    server: EmulatorServer, pki: EmulatorPKI
) -> None:
    before = len(server.records())
    for partial in (
        b"GET /version HTTP/1.1\r\nHost: x\r\nX-Half",
        b"POST /version HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
    ):
        context = client_context(pki)
        with socket.create_connection((server.host, server.port), timeout=5) as sock:
            tls = context.wrap_socket(sock, server_hostname="localhost")
            tls.sendall(partial)
        # and a plain TCP client that never speaks TLS
        socket.create_connection((server.host, server.port), timeout=5).close()
    time.sleep(0.1)  # a grace period in which nothing may be logged (no event to wait for)
    assert len(server.records()) == before
    assert request(server, pki, "GET", "/version").status == 200


def test_large_responses_are_chunked_like_go(
    server: EmulatorServer, pki: EmulatorPKI, proxy_cert: tuple[Path, Path]
) -> None:
    response = request(server, pki, "GET", "/api/v1/pods", [("X-Remote-User", "u")],
                       cert=proxy_cert)  # fmt: skip
    assert response.header("Transfer-Encoding") == "chunked"
    assert len(json.loads(response.body)["items"]) == 3


def test_watch_streams_events_until_timeout(
    server: EmulatorServer, pki: EmulatorPKI, proxy_cert: tuple[Path, Path]
) -> None:
    started = time.monotonic()
    response = request(
        server, pki, "GET", "/api/v1/namespaces/default/pods?watch=true&timeoutSeconds=1",
        [("X-Remote-User", "u")], cert=proxy_cert,
    )  # fmt: skip
    assert time.monotonic() - started >= 0.9
    events = [json.loads(line) for line in response.body.splitlines()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "nginx-1"),
        ("ADDED", "nginx-2"),
    ]


# --- other configurations -------------------------------------------------------------------


def test_anonymous_disabled_gives_401(emulator_pki: EmulatorPKI) -> None:
    with EmulatorServer(kubeadm_config(emulator_pki, anonymous_auth=False)) as server:
        response = request(server, emulator_pki, "GET", "/version")
        assert (response.status, response.body) == (401, UNAUTHORIZED_BODY)
        assert server.records()[-1]["authentication"]["error"] is None


def test_same_ca_for_both_uses_the_proxy_cn_without_username(
    emulator_pki: EmulatorPKI,
) -> None:
    config = kubeadm_config(emulator_pki, client_ca_file=emulator_pki.path("front-proxy-ca.crt"))
    proxy_cert = (emulator_pki.path("front-proxy-client.crt"),
                  emulator_pki.path("front-proxy-client.key"))  # fmt: skip
    with EmulatorServer(config) as server:
        info = whoami(request(server, emulator_pki, "POST", SSR, cert=proxy_cert))
        assert info["username"] == FRONT_PROXY_CN
        assert server.records()[-1]["authentication"]["authenticator"] == "x509"


def test_bearer_tokens(emulator_pki: EmulatorPKI, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text('secret-token,carol,42,"admins,devs"\n')
    with EmulatorServer(kubeadm_config(emulator_pki, token_auth_file=tokens)) as server:
        good = [("Authorization", "Bearer secret-token")]
        info = whoami(request(server, emulator_pki, "POST", SSR, good))
        assert info == {"username": "carol", "uid": "42",
                        "groups": ["admins", "devs", "system:authenticated"]}  # fmt: skip
        bad = request(server, emulator_pki, "GET", "/version", [("Authorization", "Bearer x")])
        assert (bad.status, bad.body) == (401, UNAUTHORIZED_BODY)
        assert server.records()[-1]["authentication"]["error"] == "invalid bearer token"
        # Basic credentials are not a bearer token: ignored, so anonymous.
        basic = request(server, emulator_pki, "GET", "/version", [("Authorization", "Basic eDp5")])
        assert basic.status == 200
        assert server.records()[-1]["authentication"]["authenticator"] == "anonymous"


def test_untrusted_cert_shapes_never_break_the_handshake(
    server: EmulatorServer, pki: EmulatorPKI
) -> None:
    # Self-signed, not a CA, no EKU at all: TLS still completes (RequestClientCert), then 401.
    odd = pki.write(custom_cert(None, "odd", ca=None, ekus=None), "odd-self-signed")
    response = request(server, pki, "GET", "/version", cert=odd)
    assert response.status == 401
