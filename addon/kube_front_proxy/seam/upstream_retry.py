"""Requests sent again when their API server failed or refused them, and a clean end for
watches whose server died.

mitmproxy 12 has no hook for any of it: when a server connection fails, HttpStream's
handle_protocol_error sends the client a 502 (or resets the stream) and no addon can undo
that; the error hook only hears about it afterwards. That method's one wrapper
(upstream_failures.py) asks `answer()` here, which decides by the seam policy's `retry`
(the router):

- the server said it never processed the request (`h2_goaway.Unprocessed`: a stream above an
  HTTP/2 GOAWAY's last stream id, RFC 9113 sections 6.8 and 8.7): the request is sent again
  on a new connection, whatever its method, preferably to another server (the router's
  resend_target), as long as the whole request is in hand;
- the connection failed before any response byte (refused, TLS failure, or closed while the
  request waited), and the router names another server (retry_target: GET and HEAD, or any
  request when the connection could not be opened, as it was never sent): the request is sent
  again there;
- a streamed watch response was cut off: it ends as if the server had ended it (terminating
  chunk, or END_STREAM on HTTP/2), through mitmproxy's own end-of-response path;
- anything else, or a router that raises: mitmproxy's own handling (fail closed: a 502).

A request is sent again exactly as mitmproxy sent it the first time
(`HttpStream.state_consume_request_body`, pinned in the seam).
"""

from __future__ import annotations

import logging

from mitmproxy.proxy import layer
from mitmproxy.proxy.layers.http import HttpStream, SendHttp
from mitmproxy.proxy.layers.http._events import (
    ErrorCode,
    RequestData,
    RequestEndOfMessage,
    RequestHeaders,
    RequestProtocolError,
    RequestTrailers,
    ResponseEndOfMessage,
    ResponseProtocolError,
)

from kube_front_proxy import seam
from kube_front_proxy.seam.h2_goaway import Unprocessed

logger = logging.getLogger("kube_front_proxy")

# The messages mitmproxy's HTTP/1 and HTTP/2 clients give a server connection that closed
# with no response byte read (a closed one with bytes gets "unexpected server response: ...").
CLOSED_BEFORE_RESPONSE = frozenset({"server closed connection", "peer closed connection"})


def install() -> None:
    """Pin what sending again relies on (idempotent)."""
    seam.pin(
        HttpStream,
        "state_consume_request_body",
        fingerprint="e3ee3fd9f617f517",
        why="a request is sent again exactly as this sends it",
    )
    seam.pin(
        HttpStream,
        "make_server_connection",
        fingerprint="a08ce3538129b5c4",
        why="sending again opens the connection with it; it handles its own failure",
    )


def request_in_hand(stream: HttpStream) -> bool:
    """No response byte came, and the whole request is in hand to send again."""
    return (
        stream.flow.response is None
        and stream.client_state == stream.state_done
        and stream.server_state == stream.state_wait_for_response_headers
    )


def failed_before_response(stream: HttpStream, event: ResponseProtocolError) -> bool:
    """The connection failed (or closed) before any response byte, request in hand."""
    return request_in_hand(stream) and (
        event.code is ErrorCode.CONNECT_FAILED or event.message in CLOSED_BEFORE_RESPONSE
    )


def answer(
    stream: HttpStream, event: RequestProtocolError | ResponseProtocolError
) -> layer.CommandGenerator[None] | None:
    """What to do instead of mitmproxy's handling of this failure, or None."""
    policy = seam.policy.retry
    if policy is None or not isinstance(event, ResponseProtocolError):
        return None
    try:
        action = _choose(policy, stream, event)
    except Exception:
        logger.exception("kube-front-proxy: internal error in the upstream retry")
        return None
    if action == "resend":
        logger.info("kube-front-proxy: sent again: %s", event.message)
        return _send_again(stream)
    if action == "retry":
        logger.info("kube-front-proxy: upstream failed before answering: %s", event.message)
        return _send_again(stream)
    if action == "end":
        logger.warning("kube-front-proxy: watch ended early: upstream %s", event.message)
        ended: layer.CommandGenerator[None] = stream.state_stream_response_body(
            ResponseEndOfMessage(stream.stream_id)
        )
        return ended
    return None


def _choose(
    policy: seam.RetryPolicy, stream: HttpStream, event: ResponseProtocolError
) -> str | None:
    if isinstance(event, Unprocessed):
        # A streamed request body is not kept: it cannot be sent again.
        if request_in_hand(stream) and not stream.flow.request.stream:
            return "resend" if policy.resend_target(stream.flow) else None
        return None
    if failed_before_response(stream, event):
        unsent = event.code is ErrorCode.CONNECT_FAILED
        return "retry" if policy.retry_target(stream.flow, unsent=unsent) else None
    if stream.server_state == stream.state_stream_response_body and policy.ends_cleanly(
        stream.flow
    ):
        return "end"
    return None


def _send_again(stream: HttpStream) -> layer.CommandGenerator[None]:
    # make_server_connection calls handle_protocol_error itself when this attempt fails too,
    # so a further retry (or the final 502) happens in there.
    ok = yield from stream.make_server_connection()
    if not ok:
        return
    request = stream.flow.request
    server = stream.context.server
    content = request.raw_content
    done_after_headers = not (content or request.trailers)
    yield SendHttp(RequestHeaders(stream.stream_id, request, done_after_headers), server)
    if content:
        yield SendHttp(RequestData(stream.stream_id, content), server)
    if request.trailers:
        yield SendHttp(RequestTrailers(stream.stream_id, request.trailers), server)
    yield SendHttp(RequestEndOfMessage(stream.stream_id), server)
