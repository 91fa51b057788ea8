"""Request size limits kept where mitmproxy reads a request: 431 for a head, 413 for a body.

mitmproxy 12 has neither limit (client/request_limits.py says why and what is measured), and no hook
runs while a head or body is read, so two of its HTTP layer methods are wrapped, at the places
mitmproxy's own checks sit, with the seam policy's `max_request_head_bytes` and
`max_request_body_bytes`:

- `Http1Server.read_headers`: a head that grows past the limit before its blank line is refused
  with a 431 Status and the connection closed, before any hook runs;
- `HttpStream.check_body_size` (request side only): a Content-Length over the limit is refused
  with a 413 Status before the body is read or anything goes upstream; a chunked body is kept
  (at most the limit) while it arrives and refused once it passes the limit, by mitmproxy's own
  body_size_limit refusal (copied: `_refuse_body`). Responses keep mitmproxy's own handling.

Over HTTP/1 both answers close the connection while the client may still be sending: the close
lingers (lingering_close.py), so that the answer is not lost to a TCP reset.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from mitmproxy import flow as mflow
from mitmproxy.net.http import http1
from mitmproxy.proxy import commands, events, layer
from mitmproxy.proxy.layers.http import HttpStream, SendHttp
from mitmproxy.proxy.layers.http._events import ErrorCode, ResponseProtocolError
from mitmproxy.proxy.layers.http._hooks import HttpErrorHook, HttpRequestHeadersHook
from mitmproxy.proxy.layers.http._http1 import Http1Server

from kube_front_proxy import seam
from kube_front_proxy.client.request_limits import (
    body_too_large,
    head_too_large,
    head_too_large_response,
)
from kube_front_proxy.seam import lingering_close, original, replace

_Commands = Generator[commands.Command, Any, Any]


def _read_headers(self: Http1Server, event: events.ConnectionEvent) -> _Commands:
    limit = seam.policy.max_request_head_bytes
    # len() first: a copy of the buffer per read only once it is over the limit.
    if (
        isinstance(event, events.DataReceived)
        and len(self.buf) > limit
        and head_too_large(bytes(self.buf), limit)
    ):
        yield commands.Log(f"request refused: head over {limit} bytes")
        lingering_close.after_final_answer(self.conn)
        yield commands.SendData(self.conn, head_too_large_response())
        yield commands.CloseConnection(self.conn)
        self.state = self.done
        return
    yield from original(Http1Server, "read_headers")(self, event)


def _check_body_size(self: HttpStream, request: bool) -> layer.CommandGenerator[bool]:
    if request:
        limit = seam.policy.max_request_body_bytes
        buffered = len(self.request_body_buf)
        size = buffered or _declared_length(self)
        if body_too_large(size, limit):
            return (yield from _refuse_body(self, limit))
        if buffered:
            # Not mitmproxy's switch to streaming at stream_large_bodies: a chunked body
            # must be seen whole (at most the limit) before any of it goes upstream.
            return False
    result: bool = yield from original(HttpStream, "check_body_size")(self, request)
    return result


def _declared_length(stream: HttpStream) -> int | None:
    try:
        size = http1.expected_http_body_size(stream.flow.request)
    except ValueError:
        return None  # mitmproxy's header validation refuses it
    return size if size and size > 0 else None


def _refuse_body(stream: HttpStream, limit: int) -> layer.CommandGenerator[bool]:
    """mitmproxy's own body_size_limit refusal: hooks, then 413 (error_pages: a Status)."""
    if not stream.request_body_buf:
        # Refused before its requestheaders hook: let the addons (audit, labels) see it.
        yield HttpRequestHeadersHook(stream.flow)
    message = f"request body over {limit} bytes"
    if not stream.flow.request.is_http2:
        # mitmproxy answers and closes the connection (HTTP/2: resets the stream).
        lingering_close.after_final_answer(stream.context.client)
    stream.flow.error = mflow.Error(message)
    yield HttpErrorHook(stream.flow)
    yield SendHttp(
        ResponseProtocolError(stream.stream_id, message, ErrorCode.REQUEST_TOO_LARGE),
        stream.context.client,
    )
    stream.client_state = stream.state_errored
    stream.flow.live = False
    return True


def install() -> None:
    """Idempotent."""
    replace(
        Http1Server,
        "read_headers",
        _read_headers,
        fingerprint="496f9de6da56eb2d",
        why="an HTTP/1 request head over the limit is refused with a 431 while it is read",
    )
    replace(
        HttpStream,
        "check_body_size",
        _check_body_size,
        fingerprint="ae602ef9fc48ca89",
        why="a request body over the limit is refused with a 413 before it goes upstream; "
        "_refuse_body copies this method's refusal branch",
    )
