"""Status bodies instead of mitmproxy's HTML error pages.

When mitmproxy itself fails a request (upstream unreachable, TLS handshake refused, malformed
request), its HTTP layers write an HTML page that quotes the internal error, upstream address
and certificate details included. No hook can replace that response, so the formatter the
HTTP/1 and HTTP/2 layers call is swapped for one that writes a Kubernetes Status with a fixed
message per status code (status.py, `PROXY_ERRORS`). The details still go to the proxy's log.

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

from kube_front_proxy import status
from kube_front_proxy.seam import original, pin, replace


def _status_page(status_code: int, message: str) -> bytes:
    del message  # holds internals: logged by mitmproxy, never sent
    return status.proxy_error_body(status_code)


def _http1_error_response(status_code: int, message: str = "") -> bytes:
    del message
    response = status.proxy_error_response(status_code)
    response.headers["Connection"] = "close"
    return bytes(http1.assemble_response(response))  # type: ignore[no-untyped-call]


# What mitmproxy's HTTP/2 layer sends after :status for an error of its own, and ours.
_MITMPROXY_ERROR_HEAD = [(b"server", version.MITMPROXY.encode()), (b"content-type", b"text/html")]
_STATUS_HEAD = [(k.lower().encode(), v.encode()) for k, v in status.status_headers().items()]


def _h2_send_headers(self: BufferedH2Connection, stream_id: int, headers: Any, *args: Any,
                     **kwargs: Any) -> None:  # fmt: skip
    if isinstance(headers, list) and headers[1:] == _MITMPROXY_ERROR_HEAD:
        headers = [headers[0], *_STATUS_HEAD]
    original(BufferedH2Connection, "send_headers")(self, stream_id, headers, *args, **kwargs)


def install() -> None:
    """Idempotent; affects only responses mitmproxy generates itself."""
    replace(
        _http1,
        "make_error_response",
        _http1_error_response,
        fingerprint="03ce75ab62e8e78b",
        why="mitmproxy's own HTTP/1 error responses are a Status, not an HTML page with internals",
    )
    replace(
        _http2,
        "format_error",
        _status_page,
        fingerprint="26271a67770fbaf1",
        why="mitmproxy's own HTTP/2 error bodies are a Status, not an HTML page with internals",
    )
    replace(
        BufferedH2Connection,
        "send_headers",
        _h2_send_headers,
        fingerprint="595764134c17080f",
        why="the head of mitmproxy's own HTTP/2 error responses is a Status's, not text/html",
    )
    pin(
        _http2.Http2Connection,
        "_handle_event",
        fingerprint="9f3b238e7809db1f",
        why="writes its error response's head as the literal list _MITMPROXY_ERROR_HEAD "
        "(seam/error_pages.py)",
    )
