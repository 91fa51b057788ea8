"""Status bodies instead of mitmproxy's HTML error pages.

When mitmproxy itself fails a request (upstream unreachable, TLS handshake refused, malformed
request), its HTTP layers write an HTML page that quotes the internal error, upstream address
and certificate details included. No hook can replace that response, so the formatter the
HTTP/1 and HTTP/2 layers call is swapped for one that writes a Kubernetes Status with a fixed
message per status code. The details still go to the proxy's log.

Over HTTP/2 the response head is a literal list inside mitmproxy's layer (`text/html`, and a
`server` header with mitmproxy's version): the HTTP/2 connection's send_headers is wrapped to
give exactly that list the Status's headers instead.
"""

from __future__ import annotations

from typing import Any

from mitmproxy import version
from mitmproxy.net.http import http1
from mitmproxy.proxy.layers.http import _http1, _http2
from mitmproxy.proxy.layers.http._http_h2 import BufferedH2Connection

from . import status

MESSAGES = {
    400: "the request could not be parsed",
    413: "the request is too large",
    502: "the Kubernetes API server could not be reached",
    504: "the Kubernetes API server did not answer in time",
}


def _message(code: int) -> str:
    return MESSAGES.get(code, "the proxy could not complete the request")


def _status_page(status_code: int, message: str) -> bytes:
    del message  # holds internals: logged by mitmproxy, never sent
    return status.status_body(status_code, _message(status_code))


def _http1_error_response(status_code: int, message: str = "") -> bytes:
    del message
    response = status.status_response(status_code, _message(status_code))
    response.headers["Connection"] = "close"
    return http1.assemble_response(response)


# What mitmproxy's HTTP/2 layer sends after :status for an error of its own, and ours.
_MITMPROXY_ERROR_HEAD = [(b"server", version.MITMPROXY.encode()), (b"content-type", b"text/html")]
_STATUS_HEAD = [(k.lower().encode(), v.encode()) for k, v in status.status_headers().items()]
_send_headers = BufferedH2Connection.send_headers


def _h2_send_headers(self: BufferedH2Connection, stream_id: int, headers: Any, *args: Any,
                     **kwargs: Any) -> None:  # fmt: skip
    if isinstance(headers, list) and headers[1:] == _MITMPROXY_ERROR_HEAD:
        headers = [headers[0], *_STATUS_HEAD]
    _send_headers(self, stream_id, headers, *args, **kwargs)


def install() -> None:
    """Idempotent; affects only responses mitmproxy generates itself."""
    _http1.make_error_response = _http1_error_response
    _http2.format_error = _status_page  # type: ignore[attr-defined]
    BufferedH2Connection.send_headers = _h2_send_headers  # type: ignore[method-assign,assignment]
