"""Every request written to an HTTP/1.1 API server says where its body ends.

mitmproxy's `Http1Client.send` writes a request head with the request's own headers, then the
body as it arrives. That is sound only when those headers frame the body, as an HTTP/1.1
client's always do, but an HTTP/2 client's need not: HTTP/2 frames a body itself, and its
`content-length` is optional. Such a request went to an HTTP/1.1 API server with neither
Content-Length nor Transfer-Encoding, and the API server read the body as the next request on
the proxy's trusted connection, with any identity headers the client wrote inside it (request
smuggling). The replacement frames each request it writes, whatever the client's protocol:

- no body: no Transfer-Encoding, and a Content-Length only as "0";
- a body with one valid Content-Length and no Transfer-Encoding: as it is, and exactly that many
  bytes are written. A body that turns out longer or shorter closes the upstream connection
  instead (the API server would read the difference as, or from, the next request);
- any other body: `Transfer-Encoding: chunked` (kept as the client wrote it when chunked is its
  final coding), no Content-Length;
- request trailers are not forwarded (over HTTP/1.1 they need a chunked body, mitmproxy's client
  fails on them, and the API server reads none).

The other end of the same rule: a client's HTTP/1.1 body whose chunked framing is broken (a
chunk size that is not hex, a missing CRLF) made mitmproxy close the connection without a word;
the client now gets a 400 Status first, as Go's and nginx's servers answer, and nothing has gone
upstream (a chunked body is read whole before it is forwarded, seam/request_size.py).

No public hook can do this: the upstream protocol is chosen by ALPN when the connection opens,
after the request hooks; a body mitmproxy starts to stream once it passes `stream_large_bodies`
sends its head without another hook; and addons after this one (mitmweb's intercept) may still
change the request. `Http1Client.send` is where every request byte for an HTTP/1 server is
written, so the rule is kept there.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from weakref import WeakKeyDictionary

from mitmproxy import http
from mitmproxy.net.http import http1
from mitmproxy.proxy import commands, events, layer
from mitmproxy.proxy.layers.http._events import (
    HttpEvent,
    RequestData,
    RequestEndOfMessage,
    RequestHeaders,
    RequestTrailers,
)
from mitmproxy.proxy.layers.http._http1 import Http1Client, Http1Server

from kube_front_proxy import seam, status

_VALID_LENGTH = re.compile(rb"0|[1-9][0-9]{0,18}")
_Send = Callable[[Http1Client, HttpEvent], layer.CommandGenerator[None]]
_ReadBody = Callable[[Http1Server, events.Event], layer.CommandGenerator[None]]

BAD_BODY = "the request body's chunked framing is malformed"


@dataclass(frozen=True)
class Framing:
    """How a request's body is delimited upstream."""

    headers: http.Headers | None
    """The head's headers, when the request's own do not frame its body; else None."""
    length: int | None
    """The exact number of body bytes the head declares; None for a chunked body."""


def frame(headers: http.Headers, body_follows: bool) -> Framing:
    """The framing of a request with these headers; `body_follows`: False when it is known
    that no body comes (RequestHeaders.end_stream)."""
    encodings = headers.get_all("transfer-encoding")
    lengths = headers.get_all("content-length")
    if not body_follows:
        if not encodings and lengths in ([], ["0"]):
            return Framing(None, 0)
        fixed = _without_framing(headers)
        if lengths:
            fixed["content-length"] = "0"
        return Framing(fixed, 0)
    if not encodings and len(lengths) == 1 and _VALID_LENGTH.fullmatch(lengths[0].encode()):
        return Framing(None, int(lengths[0]))
    chunked_last = len(encodings) == 1 and _final_coding(encodings[0]) == "chunked"
    if chunked_last and not lengths:
        return Framing(None, None)
    fixed = _without_framing(headers)
    fixed["transfer-encoding"] = encodings[0] if chunked_last else "chunked"
    return Framing(fixed, None)


def _final_coding(value: str) -> str:
    return value.rsplit(",", 1)[-1].strip(" \t").lower()


def _without_framing(headers: http.Headers) -> http.Headers:
    fixed = headers.copy()
    fixed.pop("transfer-encoding", None)
    fixed.pop("content-length", None)
    return fixed


# Body bytes each client may still write under its head's Content-Length (None: chunked);
# _CLOSED once its connection was closed for a body of the wrong length.
_remaining: WeakKeyDictionary[Http1Client, int | None] = WeakKeyDictionary()
_CLOSED = -1


def _fits(client: Http1Client, event: HttpEvent) -> bool:
    """Count a body event against the head's Content-Length: False if the body is longer, or
    ends shorter."""
    remaining = _remaining.get(client)
    if remaining is None:
        return True
    if isinstance(event, RequestData):
        remaining -= len(event.data)
        fits = remaining >= 0
    else:
        fits = not isinstance(event, RequestEndOfMessage) or remaining == 0
    _remaining[client] = remaining if fits else _CLOSED
    return fits


def _framed_send(original: _Send) -> _Send:
    def send(self: Http1Client, event: HttpEvent) -> layer.CommandGenerator[None]:
        if isinstance(event, RequestHeaders):
            framing = frame(event.request.headers, body_follows=not event.end_stream)
            _remaining[self] = framing.length
            if framing.headers is not None:
                request = event.request.copy()
                request.headers = framing.headers
                event = RequestHeaders(
                    event.stream_id, request, event.end_stream, event.replay_flow
                )
        elif isinstance(event, RequestTrailers):
            return
        # After a 101 (WebSocket, SPDY) the connection is a tunnel: its data is not a body.
        elif self.state != self.passthrough:
            if _remaining.get(self) == _CLOSED:
                return
            if not _fits(self, event):
                yield commands.Log(
                    "request body does not match its Content-Length; upstream connection closed",
                    logging.WARNING,
                )
                yield commands.CloseConnection(self.conn)
                return
        yield from original(self, event)

    return send


def bad_body_response() -> bytes:
    response = status.status_response(400, BAD_BODY)
    response.headers["Connection"] = "close"
    return bytes(http1.assemble_response(response))  # type: ignore[no-untyped-call]


def _answered_read_body(original: _ReadBody) -> _ReadBody:
    def read_body(self: Http1Server, event: events.Event) -> layer.CommandGenerator[None]:
        commands_ = original(self, event)
        result = None
        while True:
            try:
                command = commands_.send(result)
            except StopIteration:
                return
            # The reader closes the connection only when h11 cannot parse the body; while the
            # client is still there and nothing was answered, it hears why first.
            if (
                isinstance(command, commands.CloseConnection)
                and command.connection is self.conn
                and isinstance(event, events.DataReceived)
                and self.response is None
            ):
                yield commands.SendData(self.conn, bad_body_response())
            result = yield command

    return read_body


def install() -> None:
    """Idempotent (the seam never wraps twice)."""
    seam.replace(
        Http1Server,
        "read_body",
        _answered_read_body(seam.original(Http1Server, "read_body")),
        fingerprint="d821888c1e1512b3",
        why="a client body with broken chunked framing is answered 400 before the close",
    )
    original = seam.original(Http1Client, "send")
    seam.replace(
        Http1Client,
        "send",
        _framed_send(original),
        fingerprint="bf915de1a0fde10b",
        why="request bodies to an HTTP/1.1 API server must be framed by the head "
        "(HTTP/2 to HTTP/1.1 request smuggling)",
    )
