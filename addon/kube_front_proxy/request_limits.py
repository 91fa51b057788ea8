"""Request size limits: a request head (line and headers) and a request body.

mitmproxy 12 has neither: its HTTP/1 reader buffers a request head of any size ("FIXME: protect
against header size DoS" in `proxy/layers/http/_http1.py`), and its one body option,
`body_size_limit`, applies to responses as well, which would break a 200 MB list. So two of
mitmproxy's HTTP layer methods are wrapped here, as mitmproxy's own checks are placed:

- `Http1Server.read_headers`: a head that grows past the limit before its blank line is refused
  with a 431 Status and the connection closed, before any hook runs. An HTTP/2 header block
  arrives whole (the h2 stack bounds it at hpack's 64 KiB decoded header list), so it is
  measured in the addon's requestheaders hook instead (`http2_head_size`) and refused with the
  same 431 Status; only that stream ends, as Go's http2 server does.
- `HttpStream.check_body_size` (request side only): a Content-Length over the limit is refused
  with a 413 Status before the body is read or anything goes upstream; a chunked body is kept
  (at most the limit) while it arrives and refused once it passes the limit. Responses keep
  mitmproxy's own handling (streamed when large).

Go's net/http (kube-apiserver) answers 431 for a head over `MaxHeaderBytes`; kube-apiserver
refuses bodies over `MaxRequestBodyBytes`, 3 MiB (k8s.io/apiserver/pkg/server/config.go,
`NewConfig`; enforced by `limitedReadBody` in pkg/endpoints/handlers/rest.go) with a 413.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from mitmproxy import flow as mflow
from mitmproxy import http
from mitmproxy.net.http import http1
from mitmproxy.proxy import commands, events, layer
from mitmproxy.proxy.layers.http import HttpStream, SendHttp
from mitmproxy.proxy.layers.http._events import ErrorCode, ResponseProtocolError
from mitmproxy.proxy.layers.http._hooks import HttpErrorHook, HttpRequestHeadersHook
from mitmproxy.proxy.layers.http._http1 import Http1Server

from . import status

# What h11 (mitmproxy's HTTP/1 reader) takes for the end of a head.
_BLANK_LINE = re.compile(rb"\n\r?\n")

HEAD_TOO_LARGE = "the request headers are too large"
BODY_TOO_LARGE = "the request body is too large"


@dataclass
class RequestLimits:
    """Mutable so that a reload changes the limits of the installed wrappers at once."""

    max_head_bytes: int
    max_body_bytes: int


def head_too_large(buffered: bytes, limit: int) -> bool:
    """Whether the head at the start of `buffered` (complete or not) is longer than `limit`."""
    if len(buffered) <= limit:
        return False
    # A head is short enough only if its blank line ends within the limit.
    match = _BLANK_LINE.search(buffered, 0, limit)
    return match is None or match.end() > limit


def body_too_large(size: int | None, limit: int) -> bool:
    """`size`: the Content-Length, or what a chunked body has sent so far (None: nothing yet)."""
    return size is not None and size > limit


def http2_head_size(request: http.Request) -> int:
    """The size of an HTTP/2 request head as SETTINGS_MAX_HEADER_LIST_SIZE counts it (RFC 9113
    6.5.2: name + value + 32 per field, pseudo-header fields included), the measure Go's http2
    server holds to MaxHeaderBytes (golang.org/x/net/http2 server.go, `maxHeaderListSize`)."""
    fields = [
        (b":method", request.data.method),
        (b":scheme", request.data.scheme),
        (b":authority", request.data.authority),
        (b":path", request.data.path),
        *request.headers.fields,
    ]
    return sum(len(name) + len(value) + 32 for name, value in fields)


def head_too_large_status() -> http.Response:
    # Kubernetes has no StatusReason for 431; RequestEntityTooLarge is what client-go's
    # errors.IsRequestEntityTooLargeError recognises.
    return status.status_response(431, HEAD_TOO_LARGE, "RequestEntityTooLarge")


def head_too_large_response() -> bytes:
    response = head_too_large_status()
    response.headers["Connection"] = "close"
    return bytes(http1.assemble_response(response))  # type: ignore[no-untyped-call]


_Commands = Generator[commands.Command, Any, Any]


def install_request_limits(limits: RequestLimits) -> None:
    """Wrap mitmproxy's HTTP/1 head reader and request body check; idempotent."""
    read_headers: Callable[[Http1Server, events.ConnectionEvent], _Commands] = getattr(
        Http1Server.read_headers, "__wrapped__", Http1Server.read_headers
    )
    check_body_size: Callable[[HttpStream, bool], _Commands] = getattr(
        HttpStream.check_body_size, "__wrapped__", HttpStream.check_body_size
    )

    def limited_read_headers(self: Http1Server, event: events.ConnectionEvent) -> _Commands:
        if isinstance(event, events.DataReceived) and head_too_large(
            bytes(self.buf), limits.max_head_bytes
        ):
            yield commands.Log(f"request refused: head over {limits.max_head_bytes} bytes")
            yield commands.SendData(self.conn, head_too_large_response())
            yield commands.CloseConnection(self.conn)
            self.state = self.done
            return
        yield from read_headers(self, event)

    def limited_check_body_size(self: HttpStream, request: bool) -> layer.CommandGenerator[bool]:
        if request:
            buffered = len(self.request_body_buf)
            size = buffered or _declared_length(self)
            if body_too_large(size, limits.max_body_bytes):
                return (yield from _refuse_body(self, limits.max_body_bytes))
            if buffered:
                # Not mitmproxy's switch to streaming at stream_large_bodies: a chunked body
                # must be seen whole (at most the limit) before any of it goes upstream.
                return False
        result: bool = yield from check_body_size(self, request)
        return result

    limited_read_headers.__wrapped__ = read_headers  # type: ignore[attr-defined]
    limited_check_body_size.__wrapped__ = check_body_size  # type: ignore[attr-defined]
    Http1Server.read_headers = limited_read_headers  # type: ignore[method-assign]
    HttpStream.check_body_size = limited_check_body_size  # type: ignore[method-assign]


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
    stream.flow.error = mflow.Error(message)
    yield HttpErrorHook(stream.flow)
    yield SendHttp(
        ResponseProtocolError(stream.stream_id, message, ErrorCode.REQUEST_TOO_LARGE),
        stream.context.client,
    )
    stream.client_state = stream.state_errored
    stream.flow.live = False
    return True
