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
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.api_paths import SSR
from tests.support.harness import Emulator, Proxy, start_emulator, start_proxy_for
from tests.support.http1 import H1Connection, H1Response
from tests.support.http2 import H2Response
from tests.support.users import ALICE, basic_header, password_of

SA = "system:serviceaccount:kube-system:kube-front-proxy"
SA_TOKEN = "sa-token-framing-7c1e"
AUTH = basic_header("alice", password_of("alice"))
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
    conn = H1Connection(proxy.port, proxy.context())
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
    client = proxy.h2("localhost")
    try:
        answer = client.response(client.request(
            "POST", path, headers, body, validate=not kind.h2_refused,
            trailers=TRAILERS if kind.trailers else (),
        ))  # fmt: skip
        if kind.h2_refused:
            # A malformed HTTP/2 request: PROTOCOL_ERROR (this connection ends) or a 4xx.
            assert answer.status == 0 or 400 <= answer.status < 500
            client.close()
            client = proxy.h2("localhost")
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


# -- the differential corpus ---------------------------------------------------------------
#
# Raw HTTP/1.1 requests whose framing parsers disagree about (RFC 9112 6, and the classic
# CL.TE/TE.CL/TE.TE desyncs), each followed on the same connection by alice's GET with
# `Connection: close`. Whatever the proxy makes of the bytes, the API server sees only alice, at
# most the two requests she sent, and never the smuggled one; nothing is a 5xx. "ok" variants
# are well-formed: the POST must arrive with exactly its body. "refused" ones are malformed:
# the proxy answers 4xx and forwards nothing. "any": parsers may read them either way.

PAYLOAD = smuggled("corpus")
N = len(PAYLOAD)


def chunked(body: bytes, size_line: str = "{:x}", end: bytes = b"0\r\n\r\n") -> bytes:
    return (size_line.format(len(body)) + "\r\n").encode() + body + b"\r\n" + end


@dataclass(frozen=True)
class Variant:
    name: str
    framing: str  # header lines after the login, "\r\n"-separated
    body: bytes
    expect: str  # ok, refused, any
    sent: bytes = PAYLOAD  # what the API server must get, for "ok"
    line: str = "POST {path} HTTP/1.1"
    eol: str = "\r\n"


def _variants() -> list[Variant]:
    out: list[Variant] = []
    # Content-Length: name case, value whitespace, then values Go or mitmproxy refuse.
    for name in ("Content-Length", "content-length", "CONTENT-LENGTH", "cONTENT-lENGTH"):
        out.append(Variant(f"cl-name-{name}", f"{name}: {N}", PAYLOAD, "ok"))
    for label, value in [("no-space", f"{N}"), ("spaces", f"   {N}   "), ("tabs", f"\t{N}\t")]:
        out.append(Variant(f"cl-ws-{label}", f"Content-Length:{value}", PAYLOAD, "ok"))
    for label, value in [("plus", f"+{N}"), ("leading-zero", f"0{N}"), ("list", f"{N},{N}"),
                         ("list-space", f"{N}, {N}"), ("hex", f"0x{N:x}"), ("minus", "-1"),
                         ("decimal", f"{N}.0"), ("suffix", f"{N}a"), ("empty", ""),
                         ("huge", "9" * 30)]:  # fmt: skip
        out.append(Variant(f"cl-value-{label}", f"Content-Length: {value}", PAYLOAD, "refused"))
    out += [
        Variant("cl-duplicate-same", f"Content-Length: {N}\r\nContent-Length: {N}", PAYLOAD,
                "refused"),
        Variant("cl-duplicate-differ", f"Content-Length: {N}\r\nContent-Length: 0", PAYLOAD,
                "refused"),
        Variant("cl-space-before-colon", f"Content-Length : {N}", PAYLOAD, "refused"),
        Variant("cl-obs-fold", f"Content-Length:\r\n {N}", PAYLOAD, "refused"),
        Variant("cl-underscore", f"Content_Length: {N}", PAYLOAD, "any"),
        Variant("cl-vertical-tab", f"Content-Length: {N}\x0b", PAYLOAD, "any"),
        # The body is shorter than the rest: what follows it is the client's next request.
        Variant("cl-short", "Content-Length: 10", b"x" * 10 + PAYLOAD, "any"),
        Variant("cl-zero", "Content-Length: 0", PAYLOAD, "any"),
    ]  # fmt: skip
    # Transfer-Encoding: case and whitespace, codings, duplicates, TE with CL (CL.TE, TE.CL).
    body = chunked(PAYLOAD)
    for value in ("chunked", "Chunked", "CHUNKED", "  chunked  ", "\tchunked"):
        out.append(Variant(f"te-value-{value.strip()}-{len(value)}",
                           f"Transfer-Encoding: {value}", body, "ok"))  # fmt: skip
    for name in ("transfer-encoding", "TRANSFER-ENCODING"):
        out.append(Variant(f"te-name-{name}", f"{name}: chunked", body, "ok"))
    for value in ("chunked, identity", "identity, chunked", "chunked, chunked", "xchunked",
                  "chunked;q=1", "identity", "gzip", "gzip, chunked", "x-custom, chunked",
                  ""):  # fmt: skip
        out.append(Variant(f"te-value-{value or 'empty'}", f"Transfer-Encoding: {value}",
                           body, "refused"))  # fmt: skip
    out += [
        Variant("te-duplicate", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
                body, "refused"),
        Variant("te-space-before-colon", "Transfer-Encoding : chunked", body, "refused"),
        Variant("te-obs-fold", "Transfer-Encoding:\r\n chunked", body, "refused"),
        Variant("te-then-cl", f"Transfer-Encoding: chunked\r\nContent-Length: {len(body)}",
                body, "refused"),
        Variant("cl-then-te", "Content-Length: 4\r\nTransfer-Encoding: chunked", body,
                "refused"),
        Variant("te-cl-zero", "Transfer-Encoding: chunked\r\nContent-Length: 0", body,
                "refused"),
        Variant("te-underscore", "Transfer_Encoding: chunked", body, "any"),
        Variant("te-vertical-tab", "Transfer-Encoding: \x0bchunked", body, "any"),
        Variant("te-form-feed", "Transfer-Encoding: chunked\x0c", body, "any"),
        Variant("te-http10", "Transfer-Encoding: chunked", body, "refused",
                line="POST {path} HTTP/1.0"),
    ]  # fmt: skip
    # Chunk framing.
    te = "Transfer-Encoding: chunked"
    out += [
        Variant("chunk-extension", te, chunked(PAYLOAD, "{:x};ext=1"), "ok"),
        Variant("chunk-extension-quoted", te, chunked(PAYLOAD, '{:x};a="b"'), "ok"),
        Variant("chunk-upper-hex", te, chunked(PAYLOAD, "{:X}"), "ok"),
        Variant("chunk-leading-zeros", te, chunked(PAYLOAD, "000{:x}"), "ok"),
        Variant("chunk-0x", te, chunked(PAYLOAD, "0x{:x}"), "refused"),
        Variant("chunk-minus", te, b"-1\r\n" + PAYLOAD, "refused"),
        Variant("chunk-overflow", te, b"1" + b"0" * 20 + b"\r\n" + PAYLOAD, "refused"),
        Variant("chunk-no-crlf-after-data", te,
                b"%x\r\n%sX0\r\n\r\n" % (len(PAYLOAD), PAYLOAD), "refused"),
        Variant("chunk-leading-space", te, chunked(PAYLOAD, " {:x}"), "any"),
        Variant("chunk-trailing-space", te, chunked(PAYLOAD, "{:x} "), "any"),
        Variant("chunk-bare-lf", te, b"%x\n%s\n0\n\n" % (len(PAYLOAD), PAYLOAD), "any"),
        # Declared shorter than the data: the rest is not a request (or not alice's).
        Variant("chunk-short", te, chunked(b"x" * 5, end=b"") + b"0\r\n\r\n" + PAYLOAD, "any"),
        Variant("chunk-trailers", te,
                chunked(PAYLOAD, end=b"0\r\nX-Remote-User: admin\r\nContent-Length: 5\r\n\r\n"),
                "ok"),
        Variant("chunk-trailer-obs-fold", te,
                chunked(PAYLOAD, end=b"0\r\nX-A: b\r\n X-Remote-User: admin\r\n\r\n"), "any"),
    ]  # fmt: skip
    # The head itself.
    out += [
        Variant("head-bare-lf", f"Content-Length: {N}", PAYLOAD, "ok", eol="\n"),
        Variant("head-bare-cr", f"Content-Length: {N}", PAYLOAD, "refused", eol="\r"),
        Variant("head-obs-fold-other", f"Content-Length: {N}\r\nX-A: b\r\n X-Remote-User: x",
                PAYLOAD, "refused"),
        Variant("head-bare-cr-in-value", f"Content-Length: {N}\r\nX-A: b\rX-Remote-User: x",
                PAYLOAD, "refused"),
        Variant("head-absolute-form", f"Content-Length: {N}", PAYLOAD, "ok",
                line="POST https://evil.example:1{path} HTTP/1.1"),
        Variant("head-double-space", f"Content-Length: {N}", PAYLOAD, "any",
                line="POST  {path}  HTTP/1.1"),
        Variant("head-expect-continue", f"Content-Length: {N}\r\nExpect: 100-continue",
                PAYLOAD, "ok"),
        Variant("head-http10-cl", f"Content-Length: {N}", PAYLOAD, "ok",
                line="POST {path} HTTP/1.0"),
    ]  # fmt: skip
    return out


VARIANTS = _variants()


def corpus_exchange(proxy: Proxy, data: bytes) -> list[int]:
    """Every final answer on the connection, until the proxy closes it (or stops answering)."""
    conn = H1Connection(proxy.port, proxy.context(), timeout=5)
    statuses: list[int] = []
    try:
        conn.send(data)
        while True:
            try:
                r = conn.response()
            except TimeoutError:
                break  # waiting for body bytes that never come: nothing more to read
            if r is None:
                break
            if r.status >= 200:
                statuses.append(r.status)
    finally:
        conn.close()
    return statuses


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_framing_variants_over_http1(stack: Stack, variant: Variant, mode: str) -> None:
    proxy = stack.proxy(mode, "h1")
    emulator = stack.emulator("h1")
    marker = uuid.uuid4().hex[:12]
    path, after = f"{SSR}?variant={marker}", f"/version?after={marker}"
    eol = variant.eol
    head = eol.join([variant.line.format(path=path), "Host: x", f"{AUTH[0]}: {AUTH[1]}",
                     variant.framing.replace("\r\n", eol)])  # fmt: skip
    follow_up = f"GET {after} HTTP/1.1\r\nHost: x\r\n{AUTH[0]}: {AUTH[1]}\r\nConnection: close"
    before = len(emulator.requests())

    statuses = corpus_exchange(proxy, f"{head}{eol}{eol}".encode() + variant.body +
                               f"{follow_up}\r\n\r\n".encode())  # fmt: skip

    seen = emulator.requests()[before:]
    paths = [r["path"] for r in seen]
    assert all(as_alice(r, mode) for r in seen), [r["authentication"] for r in seen]
    assert not [p for p in paths if "smuggled" in p], paths
    assert set(paths) <= {path, after} and len(paths) == len(set(paths)), paths
    assert not [s for s in statuses if s >= 500], statuses
    if variant.expect == "ok":
        assert statuses[:1] == [201] and paths[:1] == [path], (statuses, paths)
        assert (seen[0]["body_length"], seen[0]["body_sha256"]) == (N, sha256(variant.sent))
    elif variant.expect == "refused":
        assert statuses[:1] and 400 <= statuses[0] < 500 and path not in paths, (statuses, paths)


@dataclass(frozen=True)
class H2Variant:
    name: str
    headers: tuple[tuple[str, str], ...]
    expect: str  # ok, refused (a 4xx, or the stream or connection reset), any
    body: bytes = PAYLOAD
    trailers: tuple[tuple[str, str], ...] = ()
    validate: bool = False  # False: the client's h2 library sends what it is given


H2_VARIANTS = [
    H2Variant("cl-exact", (("content-length", str(N)),), "ok"),
    H2Variant("no-cl", (), "ok"),
    H2Variant("no-cl-te-trailers", (("te", "trailers"),), "ok"),
    H2Variant("host-header", (("host", "evil.example:1"),), "refused"),  # not :authority
    H2Variant("trailers", (), "ok", trailers=(("x-remote-user", "admin"),
                                              ("content-length", "5"))),
    H2Variant("cl-zero-with-body", (("content-length", "0"),), "refused"),
    H2Variant("cl-short", (("content-length", "10"),), "refused"),
    H2Variant("cl-long", (("content-length", str(N + 10)),), "refused"),
    H2Variant("cl-duplicate", (("content-length", str(N)), ("content-length", str(N))),
              "refused"),
    H2Variant("cl-plus", (("content-length", f"+{N}"),), "refused"),
    H2Variant("cl-list", (("content-length", f"{N}, {N}"),), "refused"),
    H2Variant("cl-space", (("content-length", f" {N}"),), "refused"),
    H2Variant("cl-upper-case-name", (("Content-Length", str(N)),), "refused"),
    H2Variant("te-chunked", (("transfer-encoding", "chunked"),), "refused",
              body=chunked(PAYLOAD)),
    H2Variant("connection-header", (("connection", "keep-alive"),), "refused"),
    H2Variant("trailers-te", (), "any", trailers=(("transfer-encoding", "chunked"),)),
    H2Variant("trailers-pseudo", (), "refused", trailers=((":path", "/smuggled"),)),
]  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("variant", H2_VARIANTS, ids=[v.name for v in H2_VARIANTS])
def test_framing_variants_over_http2(
    stack: Stack, variant: H2Variant, upstream: str, mode: str
) -> None:
    proxy = stack.proxy(mode, upstream)
    emulator = stack.emulator(upstream)
    marker = uuid.uuid4().hex[:12]
    path, after = f"{SSR}?variant={marker}", f"/version?after={marker}"
    login = [(AUTH[0].lower(), AUTH[1])]
    before = len(emulator.requests())

    client = proxy.h2("localhost")
    try:
        answer = client.response(client.request(
            "POST", path, [*login, *variant.headers], variant.body,
            validate=variant.validate, trailers=variant.trailers,
        ))  # fmt: skip
        if client.goaway is not None:
            client.close()
            client = proxy.h2("localhost")
        follow_up = client.response(client.request("GET", after, login))
    finally:
        client.close()

    seen = emulator.requests()[before:]
    paths = [r["path"] for r in seen]
    assert all(as_alice(r, mode) for r in seen), [r["authentication"] for r in seen]
    assert not [p for p in paths if "smuggled" in p], paths
    assert answer.status < 500 and follow_up.status == 200
    if variant.expect == "ok":
        assert (answer.status, paths) == (201, [path, after])
        assert (seen[0]["body_length"], seen[0]["body_sha256"]) == (N, sha256(variant.body))
    elif variant.expect == "refused":
        assert answer.status == 0 or 400 <= answer.status < 500, answer
        assert paths == [after]
    else:
        assert paths in ([after], [path, after])
