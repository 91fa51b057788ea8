"""Credentials and identity in places the header rules did not look.

The header rules strip `Authorization` and the identity headers from a request's head. A client
can also put them in request trailers (HTTP/2 trailing HEADERS, HTTP/1.1 chunked trailers), in
`Proxy-Authorization`, in kube-apiserver's WebSocket bearer subprotocol, or in a head malformed
so that mitmproxy quotes it in its log. Property: no credential the client sent, in any
position, reaches the API server (the emulator's request log), the saved flow file, the proxy's
log, its audit log or its metrics; no identity header in any position reaches the API server.
"""

from __future__ import annotations

import base64
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.emulator import websocket
from tests.support.harness import Emulator, Proxy, start_emulator, start_proxy_for
from tests.support.processes import free_port
from tests.support.users import basic_header, password_of

ALICE = basic_header("alice", password_of("alice"))
TRAILER_SECRET = "Tr4iler-T0ken-Secret"
TRAILERS = [
    ("Authorization", f"Bearer {TRAILER_SECRET}"),
    ("X-Remote-User", "admin"),
    ("X-Remote-Group", "system:masters"),
    ("Impersonate-User", "admin"),
]
BROWSER_TOKEN = "browser-T0ken-9f2c41d7"
WS_BEARER = "base64url.bearer.authorization.k8s.io."
EXEC = "/api/v1/namespaces/default/pods/nginx-1/exec?command=true&stdout=true"


def ws_bearer(token: str) -> str:
    return WS_BEARER + base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


@dataclass
class Evidence:
    """Everything the proxy kept once it stopped: saved flows, its log, audit log, metrics."""

    flows: bytes
    log: str
    audit: str
    metrics: str

    def assert_absent(self, *secrets: str) -> None:
        for secret in secrets:
            for name, blob in [("flow file", self.flows), ("log", self.log.encode()),
                               ("audit log", self.audit.encode()),
                               ("metrics", self.metrics.encode())]:  # fmt: skip
                assert secret.encode() not in blob, f"{secret!r} in the {name}"
        assert "mitmproxy has crashed" not in self.log


def attack(pki: Path, emulator: Emulator, workdir: Path, send: Callable[[Proxy], None],
           **config: Any) -> Evidence:  # fmt: skip
    """Run `send` against a proxy in front of `emulator` that saves flows, audits and serves
    metrics; what the proxy kept, once stopped (mitmdump writes the flow file on exit)."""
    flows, audit, metrics_port = workdir / "flows.mitm", workdir / "audit.log", free_port()
    proxy = start_proxy_for(pki, workdir, emulator.port, "-w", str(flows),
                            audit={"path": str(audit)},
                            metrics={"listen": f"127.0.0.1:{metrics_port}"}, **config)  # fmt: skip
    try:
        send(proxy)
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        metrics = urllib.request.urlopen(url, timeout=10).read().decode()
    finally:
        proxy.process.stop()
    kept = audit.read_text() if audit.exists() else ""
    return Evidence(flows.read_bytes(), proxy.process.output(), kept, metrics)


def records_since(emulator: Emulator, before: int, path: str) -> list[dict[str, Any]]:
    return [r for r in emulator.requests()[before:] if r["path"].split("?")[0] == path]


def assert_only_alice(record: dict[str, Any]) -> None:
    """The API server saw alice (the proxy's lines), no trailer, no credential."""
    user = record["authentication"]["user"]
    assert user is not None and user["username"] == "alice"
    assert record["impersonated_user"] is None
    assert record["trailers"] == []
    names = [n.lower() for n, _ in record["headers"]]
    assert "authorization" not in names and "proxy-authorization" not in names
    assert [v for n, v in record["headers"] if n.lower() == "x-remote-user"] == ["alice"]


@pytest.fixture(scope="module", params=["h2", "http/1.1"])
def upstream(
    request: pytest.FixtureRequest, pki: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Emulator]:
    """An API server that speaks HTTP/2, or only HTTP/1.1."""
    flags = ["--disable-http2"] if request.param == "http/1.1" else []
    with start_emulator(pki, tmp_path_factory.mktemp("emulator"), *flags) as emu:
        yield emu


# -- trailers ------------------------------------------------------------------------------------


def test_http1_chunked_trailers_are_dropped_and_the_request_answered(
    pki: Path, upstream: Emulator, tmp_path: Path
) -> None:
    path = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
    body = b'{"kind":"SelfSubjectReview","apiVersion":"authentication.k8s.io/v1"}'
    trailers = "".join(f"{n}: {v}\r\n" for n, v in TRAILERS)
    request = (f"POST {path} HTTP/1.1\r\nHost: x\r\n{ALICE[0]}: {ALICE[1]}\r\n"
               "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
               f"Connection: close\r\n\r\n{len(body):x}\r\n").encode() + body + (
               f"\r\n0\r\n{trailers}\r\n").encode()  # fmt: skip
    before = len(upstream.requests())

    def send(proxy: Proxy) -> None:
        # Before the fix mitmproxy crashed on the trailers and the client waited forever.
        reply = proxy.exchange(request, timeout=5)
        assert reply.startswith(b"HTTP/1.1 201 "), reply[:200]
        assert b'"username":"alice"' in reply

    evidence = attack(pki, upstream, tmp_path, send)
    [record] = records_since(upstream, before, path)
    assert_only_alice(record)
    assert record["body_length"] == len(body)
    evidence.assert_absent(TRAILER_SECRET)


def test_http2_trailers_are_dropped(pki: Path, upstream: Emulator, tmp_path: Path) -> None:
    path = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
    body = b'{"kind":"SelfSubjectReview","apiVersion":"authentication.k8s.io/v1"}'
    before = len(upstream.requests())

    def send(proxy: Proxy) -> None:
        client = proxy.h2()
        try:
            head = [("authorization", ALICE[1]), ("content-type", "application/json")]
            trailers = [(n.lower(), v) for n, v in TRAILERS]
            response = client.response(client.request("POST", path, head, body,
                                                       trailers=trailers))  # fmt: skip
            assert response.status == 201 and b'"username":"alice"' in response.data
        finally:
            client.close()

    evidence = attack(pki, upstream, tmp_path, send)
    [record] = records_since(upstream, before, path)
    assert_only_alice(record)
    evidence.assert_absent(TRAILER_SECRET)


# -- Proxy-Authorization -------------------------------------------------------------------------


def test_proxy_authorization_never_leaves_the_proxy(
    pki: Path, emulator: Emulator, tmp_path: Path
) -> None:
    secret = "pr0xy-auth-S3cret"
    before = len(emulator.requests())

    def send(proxy: Proxy) -> None:
        for name in ("Proxy-Authorization", "proxy-AUTHORIZATION"):
            status, _, _ = proxy.raw("GET", "/api", [ALICE, (name, f"Bearer {secret}")])
            assert status == 200
        client = proxy.h2()
        try:
            head = [("authorization", ALICE[1]), ("proxy-authorization", f"Bearer {secret}")]
            assert client.response(client.request("GET", "/api", head)).status == 200
        finally:
            client.close()

    evidence = attack(pki, emulator, tmp_path, send)
    records = records_since(emulator, before, "/api")
    assert len(records) == 3
    for record in records:
        assert_only_alice(record)
    evidence.assert_absent(secret)


# -- kube-apiserver's WebSocket bearer subprotocol -----------------------------------------------


def open_websocket(proxy: Proxy, path: str, protocols: str,
                   extra: list[tuple[str, str]] | None = None) -> bytes:  # fmt: skip
    """A browser's WebSocket handshake (no Authorization); the proxy's answer head."""
    fields = [("Sec-WebSocket-Protocol", protocols), *(extra or [])]
    request = websocket.client_request("GET", path, "x", websocket.new_key(), fields)
    return proxy.exchange(request, timeout=5, until=b"\r\n\r\n").split(b"\r\n\r\n", 1)[0]


def test_websocket_bearer_subprotocol_logs_in_and_is_not_forwarded(
    pki: Path, emulator: Emulator, tmp_path: Path
) -> None:
    (tmp_path / "tokens.csv").write_text(f"{BROWSER_TOKEN},browser-user,77\n")
    before = len(emulator.requests())

    def send(proxy: Proxy) -> None:
        head = open_websocket(proxy, EXEC, f"{ws_bearer(BROWSER_TOKEN)}, v5.channel.k8s.io")
        assert head.startswith(b"HTTP/1.1 101 ")
        assert b"\r\nSec-WebSocket-Protocol: v5.channel.k8s.io" in head

    evidence = attack(pki, emulator, tmp_path, send, authn={"tokens": "tokens.csv"})
    [record] = records_since(emulator, before, EXEC.split("?")[0])
    assert record["status"] == 101
    assert record["authentication"]["user"]["username"] == "browser-user"
    protocols = [v for n, v in record["headers"] if n.lower() == "sec-websocket-protocol"]
    assert protocols == ["v5.channel.k8s.io"]
    evidence.assert_absent(BROWSER_TOKEN, ws_bearer(BROWSER_TOKEN))


def test_malformed_websocket_bearer_subprotocols_are_refused(
    pki: Path, emulator: Emulator, tmp_path: Path
) -> None:
    (tmp_path / "tokens.csv").write_text(f"{BROWSER_TOKEN},browser-user,77\n")
    token, unknown = ws_bearer(BROWSER_TOKEN), ws_bearer("not-the-token")
    refused = [
        (f"{token}, {token}, v5.channel.k8s.io", []),  # two tokens
        (token, []),  # nothing left to answer the handshake with
        (f"{token}=, v5.channel.k8s.io", []),  # padding: not raw base64url
        (f"{token}, v5.channel.k8s.io", [ALICE]),  # two credentials
        (f"{unknown}, v5.channel.k8s.io", []),
    ]
    before = len(emulator.requests())

    def send(proxy: Proxy) -> None:
        for protocols, extra in refused:
            head = open_websocket(proxy, EXEC, protocols, extra)
            assert head.startswith(b"HTTP/1.1 401 "), (protocols, head)

    evidence = attack(pki, emulator, tmp_path, send, authn={"tokens": "tokens.csv"})
    assert records_since(emulator, before, EXEC.split("?")[0]) == []
    evidence.assert_absent(BROWSER_TOKEN, token, unknown)


def test_bearer_subprotocol_of_a_plain_request_is_removed(
    pki: Path, emulator: Emulator, tmp_path: Path
) -> None:
    before = len(emulator.requests())

    def send(proxy: Proxy) -> None:
        fields = [ALICE, ("Sec-WebSocket-Protocol", f"{ws_bearer(BROWSER_TOKEN)}, other")]
        assert proxy.raw("GET", "/api", fields)[0] == 200

    evidence = attack(pki, emulator, tmp_path, send)
    [record] = records_since(emulator, before, "/api")
    assert_only_alice(record)
    protocols = [v for n, v in record["headers"] if n.lower() == "sec-websocket-protocol"]
    assert protocols == ["other"]
    evidence.assert_absent(BROWSER_TOKEN, ws_bearer(BROWSER_TOKEN))


# -- malformed heads: refused, and never quoted ----------------------------------------------


def test_malformed_authorization_lines_are_refused_and_never_logged(
    pki: Path, emulator: Emulator, tmp_path: Path
) -> None:
    secrets = [f"MalformedSecret{i}" for i in range(5)]
    b64 = [base64.b64encode(f"alice:{s}".encode()).decode() for s in secrets]
    before = len(emulator.requests())

    def send(proxy: Proxy) -> None:
        heads = [
            f"Authorization : Basic {b64[0]}",  # a space before the colon
            f"{ALICE[0]}: {ALICE[1]}\r\nAuthorization\t: Basic {b64[1]}",
            f"Authorization Basic {b64[2]}",  # no colon at all
        ]
        for head in heads:
            reply = proxy.exchange(f"GET /api HTTP/1.1\r\nHost: x\r\n{head}\r\n\r\n".encode())
            assert reply.startswith(b"HTTP/1.1 400 "), reply[:100]
        # A head cut off by the client: mitmproxy logged what had arrived.
        reply = proxy.exchange(f"GET /api HTTP/1.1\r\nAuthorization: Basic {b64[3]}\r\n".encode(),
                               timeout=1)  # fmt: skip
        # A token sent without a scheme: refused, and the "scheme" is not quoted.
        assert proxy.raw("GET", "/api", [("Authorization", secrets[4])])[0] == 401

    evidence = attack(pki, emulator, tmp_path, send)
    assert records_since(emulator, before, "/api") == []
    evidence.assert_absent(*secrets, *b64)


def test_malformed_http2_credential_headers_are_never_logged(
    pki: Path, emulator: Emulator, tmp_path: Path
) -> None:
    secrets = [f"H2MalformedSecret{i}" for i in range(3)]
    before = len(emulator.requests())

    def send(proxy: Proxy) -> None:
        for name, value in [("authorization", f" Bearer {secrets[0]}"),  # surrounding space
                            ("Authorization", f"Bearer {secrets[1]}"),  # upper case in h2
                            ("authorization ", f"Bearer {secrets[2]}")]:  # fmt: skip
            client = proxy.h2()
            try:
                stream = client.request("GET", "/api", [(name, value)], validate=False)
                # A stream reset or the connection ended (GOAWAY): either is a refusal.
                assert client.response(stream).status != 200
            finally:
                client.close()

    evidence = attack(pki, emulator, tmp_path, send)
    assert records_since(emulator, before, "/api") == []
    evidence.assert_absent(*secrets)
