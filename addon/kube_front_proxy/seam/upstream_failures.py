"""What a request gets when its API server connection fails: the one wrapper of
`HttpStream.handle_protocol_error`.

mitmproxy answers every failure of a server connection there, with a 502 (or a reset
stream), and no hook runs before it: the error hook only hears about it afterwards. Two of the
proxy's rules must decide first, and they are asked in this order, the first that answers
wins:

1. `timed_out`: the request ran into `upstream.response_timeout_seconds`
(upstream/response_timeout.py
   closed its connection). It is answered with a 504 Status, fed to the stream as if the API
   server had sent it, so it goes through the usual hooks (audit, metrics) to the client, on
   HTTP/1 and HTTP/2 alike, and the client connection stays usable. kube-apiserver answers a
   request that outlives its --request-timeout the same way (k8s.io/apiserver/pkg/server/
   filters/timeout.go: 504, reason Timeout). A timed-out request is never sent again.
2. `upstream_retry.answer`: the request is sent again (to another server), or a cut watch ends
   cleanly, as the seam policy's `retry` (the router) decides.
3. Neither: mitmproxy's own handling (fail closed: a 502).
"""

from __future__ import annotations

from collections.abc import Callable

from mitmproxy import http
from mitmproxy.proxy import layer
from mitmproxy.proxy.layers.http import HttpStream
from mitmproxy.proxy.layers.http._events import (
    RequestProtocolError,
    ResponseData,
    ResponseEndOfMessage,
    ResponseHeaders,
    ResponseProtocolError,
)

from kube_front_proxy.seam import original, replace, upstream_retry
from kube_front_proxy.upstream.response_timeout import TIMED_OUT, gateway_timeout

_Event = RequestProtocolError | ResponseProtocolError
_Answer = Callable[[HttpStream, _Event], layer.CommandGenerator[None] | None]


def timed_out(stream: HttpStream, event: _Event) -> layer.CommandGenerator[None] | None:
    """A 504 Status for a request whose API server did not answer in time, or None."""
    flow: http.HTTPFlow | None = getattr(stream, "flow", None)  # unset before any request
    seconds = flow.metadata.get(TIMED_OUT) if flow else None
    if not (isinstance(event, ResponseProtocolError) and seconds and flow and not flow.response):
        return None
    return _answer(stream, gateway_timeout(seconds))


def _answer(stream: HttpStream, response: http.Response) -> layer.CommandGenerator[None]:
    # Fed to the stream as if the API server had sent it (mitmproxy's check_body_size feeds
    # its buffered data back the same way).
    sid = stream.stream_id
    yield from stream.handle_event(ResponseHeaders(sid, response, end_stream=False))
    yield from stream.handle_event(ResponseData(sid, response.content or b""))
    yield from stream.handle_event(ResponseEndOfMessage(sid))


# The order in which the rules are asked (see the module docstring).
ANSWERS: tuple[_Answer, ...] = (timed_out, upstream_retry.answer)


def _handle_protocol_error(stream: HttpStream, event: _Event) -> layer.CommandGenerator[None]:
    for answer in ANSWERS:
        commands = answer(stream, event)
        if commands is not None:
            yield from commands
            return
    yield from original(HttpStream, "handle_protocol_error")(stream, event)


def install() -> None:
    """Idempotent."""
    upstream_retry.install()
    replace(
        HttpStream,
        "handle_protocol_error",
        _handle_protocol_error,
        fingerprint="0dbef15c4f5bfb6c",
        why="a timed-out request is answered 504; requests the API server failed or refused "
        "are sent again; cut watches end (seam/upstream_failures.py)",
    )
