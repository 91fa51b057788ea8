"""Request size limits: a request head (line and headers) and a request body.

mitmproxy 12 has neither: its HTTP/1 reader buffers a request head of any size ("FIXME: protect
against header size DoS" in `proxy/layers/http/_http1.py`), and its one body option,
`body_size_limit`, applies to responses as well, which would break a 200 MB list. So two of
mitmproxy's HTTP layer methods are wrapped (seam/request_size.py), as mitmproxy's own checks are
placed, with the measures and answers below (limits: the seam policy's
`max_request_head_bytes` and `max_request_body_bytes`):

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

from mitmproxy import http
from mitmproxy.net.http import http1

from kube_front_proxy import status

# What h11 (mitmproxy's HTTP/1 reader) takes for the end of a head.
_BLANK_LINE = re.compile(rb"\n\r?\n")

HEAD_TOO_LARGE = "the request headers are too large"


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
