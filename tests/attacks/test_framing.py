"""Framing: one client request must never become two upstream requests.

An HTTP/2 request with a body and no content-length went to an HTTP/1.1 API server with neither
Content-Length nor Transfer-Encoding; the API server read the body as a second request on the
proxy's trusted connection, with the X-Remote-* headers the client wrote inside it. Every body
here carries such a smuggled request (as user `admin`, group `system:masters`, and an
Impersonate-User), so any framing mistake shows in the emulator's request log as a request
that is not alice's.

The matrix: client HTTP/1.1 and HTTP/2 x upstream HTTP/1.1 and HTTP/2 x each way of sending a
body x front-proxy and impersonation mode. In every cell the API server sees exactly the one
request (with its exact body) and the follow-up on the same client connection, both as alice.
Then the differential corpus: generated framing variants of raw HTTP/1.1 and HTTP/2 requests.
"""

from __future__ import annotations

import hashlib
import json
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..e2e import ALICE, Emulator, Proxy, basic_header, password_of, start_emulator, start_proxy_for
from ..h1client import H1Connection, H1Response
from ..h2client import H2Client, H2Response

SA = "system:serviceaccount:kube-system:kube-front-proxy"
SA_TOKEN = "sa-token-framing-7c1e"
AUTH = basic_header("alice", password_of("alice"))
SSR = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
LARGE = 1536 * 1024  # over mitmproxy's stream_large_bodies (1m), under max_request_body_mb (3)
ALICE_USER = {
    "username": "alice",
    "uid": ALICE["uid"],
    "groups": [*ALICE["groups"], "system:authenticated"],
    "extra": ALICE["extra"],
}


def smuggled(marker: str) -> bytes:
    """A request that, read as a request, would be someone other than alice."""
    return (
        f"GET /smuggled?{marker} HTTP/1.1\r\nHost: x\r\nX-Remote-User: admin\r\n"
        "X-Remote-Group: system:masters\r\nImpersonate-User: admin\r\n\r\n"
    ).encode()


@dataclass
class Stack:
    """Emulators (with and without h2) and proxies (both identity modes), started on demand
    and shared by the whole module."""

    pki: Path
    workdir: Path
    emulators: dict[str, Emulator]
    proxies: dict[tuple[str, str], Proxy]

    def emulator(self, upstream: str) -> Emulator:
        if upstream not in self.emulators:
            workdir = self.workdir / f"emulator-{upstream}"
            workdir.mkdir()
            (workdir / "tokens.csv").write_text(f"{SA_TOKEN},{SA},sa-uid\n")
            flags = ["--token-auth-file", str(workdir / "tokens.csv"),
                     "--authorization-mode", "AlwaysAllow", "-q"]  # fmt: skip
            if upstream == "h1":
                flags.append("--disable-http2")
            self.emulators[upstream] = start_emulator(self.pki, workdir, *flags)
        return self.emulators[upstream]

    def proxy(self, mode: str, upstream: str) -> Proxy:
        if (mode, upstream) not in self.proxies:
            workdir = self.workdir / f"proxy-{mode}-{upstream}"
            overrides: dict[str, Any] = {"upstream": {"check_cluster_trust": False}}
            if mode == "impersonate":
                workdir.mkdir()
                (workdir / "sa-token").write_text(SA_TOKEN + "\n")
                overrides = {
                    "identity": {"mode": "impersonate"},
                    "upstream": {"check_cluster_trust": False, "token_file": "sa-token",
                                 "client_cert": None, "client_key": None},
                }  # fmt: skip
            port = self.emulator(upstream).port
            self.proxies[mode, upstream] = start_proxy_for(self.pki, workdir, port, **overrides)
        return self.proxies[mode, upstream]

    def stop(self) -> None:
        for process in [*self.proxies.values(), *self.emulators.values()]:
            process.process.stop()


@pytest.fixture(scope="module")
def stack(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(pki, tmp_path_factory.mktemp("framing"), {}, {})
    yield s
    s.stop()


def context(proxy: Proxy) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(proxy.pki / "proxy-ca.crt"))


def as_alice(record: dict[str, Any], mode: str) -> bool:
    """Whether the API server took this request to be alice's, and nobody else's."""
    auth = record["authentication"]
    if mode == "impersonate":
        return bool(auth["user"]["username"] == SA and record["impersonated_user"] == ALICE_USER)
    return bool(auth["authenticator"] == "requestheader" and auth["user"] == ALICE_USER)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- the matrix ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """One way of sending a request body."""

    name: str
    size: int = 300  # body bytes, the smuggled request first (0: no body)
    h1_framing: str = "content-length"  # content-length, chunked, none
    h2_length: bool = True  # send a content-length on HTTP/2
    trailers: bool = False
    h2_refused: bool = False  # HTTP/2 forbids it: refused, nothing reaches the API server


KINDS = [
    Kind("content-length"),
    # HTTP/1.1: a body without framing is no body; its bytes are the client's next request.
    # HTTP/2: a body without content-length (the smuggling of this class).
    Kind("no-length", h1_framing="none", h2_length=False),
    # HTTP/2 has no chunked coding: a transfer-encoding header makes the request malformed.
    Kind("chunked", h1_framing="chunked", h2_length=False, h2_refused=True),
    Kind("empty", size=0),
    Kind("trailers", h1_framing="chunked", h2_length=False, trailers=True),
    Kind("streamed", size=LARGE),
    Kind("large-no-length", size=LARGE, h1_framing="chunked", h2_length=False),
]
CLIENTS = ["h1", "h2"]
UPSTREAMS = ["h1", "h2"]
MODES = ["front-proxy", "impersonate"]
# The trailers a client may send: identity and credentials the API server must never see.
TRAILERS = [("x-remote-user", "admin"), ("impersonate-user", "admin"),
            ("authorization", AUTH[1])]  # fmt: skip


def body_for(kind: Kind, marker: str) -> bytes:
    if not kind.size:
        return b""
    start = smuggled(marker)
    return start + b"x" * (kind.size - len(start))


def h1_request(kind: Kind, path: str, body: bytes) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\n{AUTH[0]}: {AUTH[1]}\r\n"
    if kind.h1_framing == "content-length":
        return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
    if kind.h1_framing == "none":
        return f"{head}\r\n".encode() + body
    half = len(body) // 2
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (body[:half], body[half:]) if c)
    trailers = "".join(f"{n}: {v}\r\n" for n, v in TRAILERS) if kind.trailers else ""
    last = f"0\r\n{trailers}\r\n".encode()
    return f"{head}Transfer-Encoding: chunked\r\n\r\n".encode() + chunks + last


def h1_cell(proxy: Proxy, kind: Kind, path: str, body: bytes, after: str) -> list[int]:
    """The client's answers: the POST (and, with no framing, its body read as a request),
    then the follow-up GET."""
    conn = H1Connection(proxy.port, context(proxy))
    try:
        conn.send(h1_request(kind, path, body))
        answers = [response(conn.response("POST"))]
        if kind.h1_framing == "none" and body:
            answers.append(response(conn.response()))
        conn.send(f"GET {after} HTTP/1.1\r\nHost: x\r\n{AUTH[0]}: {AUTH[1]}\r\n\r\n".encode())
        answers.append(response(conn.response()))
    finally:
        conn.close()
    return answers


def response(r: H1Response | None) -> int:
    assert r is not None, "the proxy closed the connection instead of answering"
    if r.status == 201:
        assert json.loads(r.body)["status"]["userInfo"]["username"] == "alice"
    return r.status


def h2_cell(proxy: Proxy, kind: Kind, path: str, body: bytes, after: str) -> list[int]:
    login = [(AUTH[0].lower(), AUTH[1])]
    headers = list(login)
    if kind.h2_length:
        headers.append(("content-length", str(len(body))))
    if kind.h2_refused:
        headers.append(("transfer-encoding", "chunked"))
    client = H2Client(proxy.port, context(proxy), "localhost")
    try:
        answer = client.response(client.request(
            "POST", path, headers, body, validate=not kind.h2_refused,
            trailers=TRAILERS if kind.trailers else (),
        ))  # fmt: skip
        if kind.h2_refused:
            # A malformed HTTP/2 request: PROTOCOL_ERROR (this connection ends) or a 4xx.
            assert answer.status == 0 or 400 <= answer.status < 500
            client.close()
            client = H2Client(proxy.port, context(proxy), "localhost")
            first = 400
        else:
            first = h2_status(answer)
        return [first, h2_status(client.response(client.request("GET", after, login)))]
    finally:
        client.close()


def h2_status(r: H2Response) -> int:
    assert r.reset is None, f"stream reset ({r.reset})"
    if r.status == 201:
        assert json.loads(r.data)["status"]["userInfo"]["username"] == "alice"
    return r.status


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_one_client_request_is_one_upstream_request(
    stack: Stack, client: str, upstream: str, mode: str, kind: Kind
) -> None:
    proxy = stack.proxy(mode, upstream)
    emulator = stack.emulator(upstream)
    marker = uuid.uuid4().hex[:12]
    path, after = f"{SSR}?cell={marker}", f"/version?after={marker}"
    body = body_for(kind, marker)
    before = len(emulator.requests())

    if client == "h1":
        answers = h1_cell(proxy, kind, path, body, after)
    else:
        answers = h2_cell(proxy, kind, path, body, after)

    seen = emulator.requests()[before:]
    refused = client == "h2" and kind.h2_refused
    # With no framing, an HTTP/1.1 body is no body: its bytes were the client's next request,
    # which carried no credentials and was refused at the proxy.
    sent = b"" if client == "h1" and kind.h1_framing == "none" else body
    expected_paths = [after] if refused else [path, after]
    assert [r["path"] for r in seen] == expected_paths, answers
    assert all(as_alice(r, mode) for r in seen), [r["authentication"] for r in seen]
    if not refused:
        assert (seen[0]["body_length"], seen[0]["body_sha256"]) == (len(sent), sha256(sent))
        assert seen[0]["alpn"] == ("h2" if upstream == "h2" and mode != "impersonate" and
                                   client == "h2" else "http/1.1")  # fmt: skip
    expected = [400, 200] if refused else [201, 200]
    if client == "h1" and kind.h1_framing == "none" and body:
        expected = [201, 401, 200]
    assert answers == expected
