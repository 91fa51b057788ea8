"""End to end: real kubectl and raw HTTPS -> the proxy (mitmdump) -> the API-server emulator."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.support.harness import Emulator, Proxy, start_emulator, start_proxy_for
from tests.support.users import ALICE, ALICE_LINES, SCHEME_USERS, basic_header, password_of

UNAUTHORIZED = (
    b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
    b'"message":"Unauthorized","reason":"Unauthorized","code":401}\n'
)
IDENTITY = re.compile(r"(?i)^(x-remote-|authorization$|x-auth-)")


def identity_headers(record: dict[str, Any]) -> list[list[str]]:
    """The identity (and Authorization) header lines the API server received, in order."""
    return [h for h in record["headers"] if IDENTITY.match(h[0])]


def new_requests(emulator: Emulator, before: int) -> list[dict[str, Any]]:
    return emulator.requests()[before:]


def test_kubectl_whoami_shows_the_identity_the_api_server_understood(proxy: Proxy) -> None:
    info = proxy.whoami("alice")
    assert info["username"] == "alice"
    assert info["uid"] == "1001"
    assert info["groups"] == [*ALICE["groups"], "system:authenticated"]
    assert info["extra"] == ALICE["extra"]


def test_kubectl_get_pods(proxy: Proxy) -> None:
    result = proxy.kubectl("get", "pods")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split()[:2] == ["NAME", "READY"]
    assert len(result.stdout.splitlines()) > 1


@pytest.mark.parametrize("scheme", sorted(SCHEME_USERS))
def test_every_hash_scheme_logs_in(proxy: Proxy, scheme: str) -> None:
    user = SCHEME_USERS[scheme]
    info = proxy.whoami(user)
    # Not in users.yaml: its name and no groups (plus what the API server always adds).
    assert info["username"] == user
    assert info["groups"] == ["system:authenticated"]


@pytest.mark.parametrize(
    ("user", "password"), [("alice", "wrong"), ("mallory", "whatever"), ("alice", "")]
)
def test_bad_credentials_never_reach_the_api_server(
    proxy: Proxy, emulator: Emulator, user: str, password: str
) -> None:
    before = len(emulator.requests())
    result = proxy.kubectl("get", "pods", user=user, password=password or " ")
    assert result.returncode == 1
    assert "You must be logged in to the server (Unauthorized)" in result.stderr
    assert new_requests(emulator, before) == []


def test_missing_credentials_get_the_api_servers_401(proxy: Proxy, emulator: Emulator) -> None:
    before = len(emulator.requests())
    status, headers, body = proxy.raw("GET", "/api/v1/pods", [("X-Remote-User", "admin")])
    assert status == 401
    assert body == UNAUTHORIZED
    assert headers["WWW-Authenticate"] == 'Basic realm="kubernetes"'
    assert headers["Content-Type"] == "application/json"
    assert new_requests(emulator, before) == []


SPOOFS = [
    ("X-Remote-User", "admin"),
    ("x-remote-user", "admin"),
    ("X-REMOTE-USER", "admin"),
    ("X-Remote-Group", "system:masters"),
    ("x-remote-group", "system:masters"),
    ("X-Remote-Uid", "0"),
    ("x-REMOTE-uid", "0"),
    ("X-Remote-Extra-Scopes", "admin"),
    ("x-remote-extra-scopes", "admin"),
    ("X-REMOTE-EXTRA-acme.com%2Fproject", "all"),
    ("X-Remote-Extra-", "empty-key"),
]


def test_spoofed_identity_headers_are_replaced_byte_for_byte(
    proxy: Proxy, emulator: Emulator
) -> None:
    before = len(emulator.requests())
    status, _, body = proxy.raw(
        "GET", "/api/v1/namespaces/default/pods",
        [*SPOOFS, basic_header("alice", password_of("alice")), *SPOOFS, ("Accept", "*/*")],
    )  # fmt: skip
    assert status == 200, body
    [record] = new_requests(emulator, before)
    assert identity_headers(record) == ALICE_LINES
    # The password (Authorization) never reaches the API server.
    assert not any(h[0].lower() == "authorization" for h in record["headers"])
    assert record["peer_cert_cn"] == "front-proxy-client"
    assert record["authentication"]["authenticator"] == "requestheader"
    assert record["authentication"]["user"]["username"] == "alice"
    assert record["authentication"]["user"]["groups"] == [*ALICE["groups"], "system:authenticated"]


def test_identity_over_http2(proxy: Proxy) -> None:
    # kubectl speaks HTTP/2 to the proxy (ALPN h2) and the emulator HTTP/1.1 behind it.
    result = proxy.kubectl("get", "--raw", "/api", "-v=6")
    assert result.returncode == 0, result.stderr
    info = proxy.whoami("alice")
    assert info["username"] == "alice"


CUSTOM = {
    "username_headers": ["X-Auth-User", "X-Remote-User"],
    "group_headers": ["X-Auth-Groups"],
    "extra_headers_prefixes": ["X-Auth-Extra-", "X-Remote-Extra-"],
    "uid_headers": ["X-Auth-Uid", "X-Remote-Uid"],
}


def test_custom_header_names_end_to_end(
    pki: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    workdir = tmp_path_factory.mktemp("custom")
    emu = start_emulator(
        pki, workdir,
        "--requestheader-username-headers", ",".join(CUSTOM["username_headers"]),
        "--requestheader-group-headers", ",".join(CUSTOM["group_headers"]),
        "--requestheader-extra-headers-prefix", ",".join(CUSTOM["extra_headers_prefixes"]),
        "--requestheader-uid-headers", ",".join(CUSTOM["uid_headers"]),
    )  # fmt: skip
    try:
        proxy = start_proxy_for(pki, workdir, emu.port, identity=CUSTOM)
        try:
            spoofs = [("x-auth-user", "admin"), ("X-REMOTE-USER", "admin"),
                      ("x-auth-groups", "system:masters"), ("X-Remote-Group", "system:masters"),
                      ("x-auth-uid", "0"), ("x-remote-uid", "0"),
                      ("X-AUTH-EXTRA-scopes", "all"), ("x-remote-extra-scopes", "all")]  # fmt: skip
            status, _, body = proxy.raw(
                "GET", "/api", [*spoofs, basic_header("alice", password_of("alice"))]
            )
            assert status == 200, body
            info = proxy.whoami("alice")
        finally:
            proxy.process.stop()
    finally:
        emu.process.stop()
    [record] = [r for r in emu.requests() if r["path"] == "/api"]
    received = [h for h in record["headers"] if re.match(r"(?i)x-(auth|remote)-", h[0])]
    assert received == [
        # X-Remote-Group is not a configured group header here, but kube-apiserver's default:
        # stripped all the same, as a config naming others must not let it through.
        ["X-Auth-User", "alice"],
        ["X-Auth-Uid", "1001"],
        ["X-Auth-Groups", "developers"],
        ["X-Auth-Groups", "system:masters"],
        ["X-Auth-Groups", "a,b"],
        ["X-Auth-Extra-scopes", "view"],
        ["X-Auth-Extra-scopes", "edit"],
        ["X-Auth-Extra-acme.com%2Fproject", "payments"],
    ]
    assert info["username"] == "alice"
    assert info["groups"] == [*ALICE["groups"], "system:authenticated"]
    assert info["extra"] == ALICE["extra"]
