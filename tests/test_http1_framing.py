"""seam/http1_framing.py without a proxy: the framing rule, and mitmproxy's HTTP/1 client
driven with the events its HTTP layer sends it, checked on the bytes it writes."""

from __future__ import annotations

import pytest
from mitmproxy import http
from mitmproxy.options import Options
from mitmproxy.proxy import commands
from mitmproxy.proxy.context import Context
from mitmproxy.proxy.layers.http._events import (
    HttpEvent,
    RequestData,
    RequestEndOfMessage,
    RequestHeaders,
    RequestTrailers,
)
from mitmproxy.proxy.layers.http._http1 import Http1Client
from mitmproxy.test import tflow, tutils

from kube_front_proxy.seam import http1_framing
from kube_front_proxy.seam.http1_framing import frame

http1_framing.install()


def headers(*fields: tuple[str, str]) -> http.Headers:
    return http.Headers([(n.encode(), v.encode()) for n, v in fields])


@pytest.mark.parametrize(
    ("fields", "body_follows", "expected", "length"),
    [
        ((), False, None, 0),
        ((("Content-Length", "0"),), False, None, 0),
        ((("Content-Length", "5"),), False, [("Content-Length", "0")], 0),
        ((("Transfer-Encoding", "chunked"),), False, [], 0),
        ((("Content-Length", "5"),), True, None, 5),
        ((("content-length", "5"),), True, None, 5),
        ((("Transfer-Encoding", "chunked"),), True, None, None),
        ((("Transfer-Encoding", "gzip, chunked"),), True, None, None),
        # HTTP/2 frames a body itself: without a content-length it must be chunked here.
        ((), True, [("transfer-encoding", "chunked")], None),
        ((("Content-Length", "+5"),), True, [("transfer-encoding", "chunked")], None),
        ((("Content-Length", "5"), ("Content-Length", "5")), True,
         [("transfer-encoding", "chunked")], None),
        ((("Content-Length", "5"), ("Transfer-Encoding", "chunked")), True,
         [("transfer-encoding", "chunked")], None),
        ((("Transfer-Encoding", "chunked, gzip"),), True, [("transfer-encoding", "chunked")], None),
        ((("Transfer-Encoding", "identity"),), True, [("transfer-encoding", "chunked")], None),
        ((("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")), True,
         [("transfer-encoding", "chunked")], None),
    ],
)  # fmt: skip
def test_the_head_frames_the_body(
    fields: tuple[tuple[str, str], ...],
    body_follows: bool,
    expected: list[tuple[str, str]] | None,
    length: int | None,
) -> None:
    framing = frame(headers(("Host", "k"), *fields), body_follows)
    assert framing.length == length
    if expected is None:
        assert framing.headers is None
    else:
        assert framing.headers is not None
        assert [(n.lower(), v) for n, v in framing.headers.items(multi=True)] == [
            ("host", "k"),
            *((n.lower(), v) for n, v in expected),
        ]


def written(*events: HttpEvent) -> list[commands.Command]:
    client = Http1Client(Context(tflow.tclient_conn(), Options()))
    out: list[commands.Command] = []
    for event in events:
        out.extend(client.send(event))
    return out


def data(cmds: list[commands.Command]) -> bytes:
    return b"".join(c.data for c in cmds if isinstance(c, commands.SendData))


def closed(cmds: list[commands.Command]) -> bool:
    return any(isinstance(c, commands.CloseConnection) for c in cmds)


def h2_request(*fields: tuple[str, str]) -> http.Request:
    return tutils.treq(http_version=b"HTTP/2.0", method=b"POST", authority=b"k:443",
                       headers=headers(*fields), content=b"")  # fmt: skip


def test_an_http2_body_without_length_is_chunked_upstream() -> None:
    smuggled = b"GET /x HTTP/1.1\r\nHost: k\r\nX-Remote-User: admin\r\n\r\n"
    request = h2_request()
    out = written(RequestHeaders(1, request, end_stream=False), RequestData(1, smuggled),
                  RequestTrailers(1, headers(("x-remote-user", "admin"))),
                  RequestEndOfMessage(1))  # fmt: skip
    head, _, body = data(out).partition(b"\r\n\r\n")
    assert b"\r\ntransfer-encoding: chunked" in head
    assert body == b"%x\r\n%s\r\n0\r\n\r\n" % (len(smuggled), smuggled)
    # The flow keeps what the client sent.
    assert "transfer-encoding" not in request.headers
    assert not closed(out)


@pytest.mark.parametrize("chunks", [[b"123456"], [b"12", b"3456"]])
def test_a_body_longer_than_its_content_length_is_not_written(chunks: list[bytes]) -> None:
    out = written(RequestHeaders(1, h2_request(("content-length", "5")), end_stream=False),
                  *(RequestData(1, c) for c in chunks), RequestEndOfMessage(1))  # fmt: skip
    assert closed(out)
    assert b"3456" not in data(out) and b"123456" not in data(out)


def test_a_body_shorter_than_its_content_length_closes_the_connection() -> None:
    out = written(RequestHeaders(1, h2_request(("content-length", "5")), end_stream=False),
                  RequestData(1, b"123"), RequestEndOfMessage(1))  # fmt: skip
    assert closed(out)
    assert data(out).endswith(b"\r\n\r\n123")


def test_an_exact_body_is_written_as_it_is() -> None:
    head = RequestHeaders(1, h2_request(("content-length", "5")), end_stream=False)
    out = written(head, RequestData(1, b"12"), RequestData(1, b"345"), RequestEndOfMessage(1))
    assert not closed(out)
    assert data(out).endswith(b"content-length: 5\r\n\r\n12345")
