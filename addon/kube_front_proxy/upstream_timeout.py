"""Upstream response timeout: an API server that does not start its answer in time gets a 504.

mitmproxy 12 waits for a response as long as the connection lives. Here each request forwarded
upstream gets a timer, started when mitmproxy has the whole request (`request` hook) and
stopped when the response headers arrive (`responseheaders`): a watch, a followed log or an
exec session is exempt from then on. When the timer fires, the upstream connection is closed.
mitmproxy then fails the request with a 502; `install` wraps `HttpStream.handle_protocol_error`
so that a timed-out request is answered with a 504 Status instead, as if the API server had
sent it: the response goes through the usual hooks (audit, metrics) to the client, on HTTP/1
and HTTP/2 alike, and the client connection stays usable.

kube-apiserver answers a request that outlives its --request-timeout (60 s) the same way: 504,
reason Timeout (k8s.io/apiserver/pkg/server/filters/timeout.go, `baseTimeoutWriter.timeout`,
with `apierrors.NewTimeoutError`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Generator
from typing import Any

from mitmproxy import ctx, http
from mitmproxy.proxy import commands
from mitmproxy.proxy.layers.http import HttpStream
from mitmproxy.proxy.layers.http._events import (
    RequestProtocolError,
    ResponseData,
    ResponseEndOfMessage,
    ResponseHeaders,
    ResponseProtocolError,
)

from .status import status_response

logger = logging.getLogger("kube_front_proxy")

# flow.metadata key: the timeout (seconds) the flow ran into; shown in mitmweb and saved flows.
TIMED_OUT = "k8s_upstream_timeout"


def timeout_message(seconds: float) -> str:
    return f"the Kubernetes API server did not answer within {seconds:g} seconds"


def gateway_timeout(seconds: float) -> http.Response:
    return status_response(504, timeout_message(seconds))


class UpstreamTimeouts:
    """One timer per request waiting for its response headers; `seconds` 0 turns them off."""

    def __init__(self, seconds: float, close_upstream: Callable[[http.HTTPFlow], None]) -> None:
        self.seconds = seconds
        self._close_upstream = close_upstream
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def start(self, flow: http.HTTPFlow) -> None:
        if self.seconds > 0 and flow.id not in self._timers:
            loop = asyncio.get_running_loop()
            self._timers[flow.id] = loop.call_later(self.seconds, self._expire, flow, self.seconds)

    def stop(self, flow: http.HTTPFlow) -> None:
        timer = self._timers.pop(flow.id, None)
        if timer:
            timer.cancel()

    @property
    def pending(self) -> int:
        return len(self._timers)

    def _expire(self, flow: http.HTTPFlow, seconds: float) -> None:
        self._timers.pop(flow.id, None)
        flow.metadata[TIMED_OUT] = seconds
        logger.warning(
            "kube-front-proxy: %s %s: no response from the API server in %g s; closing it",
            flow.request.method,
            flow.request.path.split("?", 1)[0],
            seconds,
        )
        self._close_upstream(flow)


def close_upstream_connection(flow: http.HTTPFlow) -> None:
    """Close the flow's upstream connection as mitmproxy's own CloseConnection command does.

    On an HTTP/2 upstream connection this ends the other requests on it as well: a client's
    requests share one connection there.
    """
    proxyserver = ctx.master.addons.get("proxyserver")  # type: ignore[no-untyped-call]
    handler = proxyserver.connections.get(flow.client_conn.id)
    if handler is not None and flow.server_conn in handler.transports:
        handler.close_connection(flow.server_conn)


_Commands = Generator[commands.Command, Any, Any]


def install_timeout_responses() -> None:
    """Answer requests that timed out with a 504 Status response; idempotent."""
    original: Callable[[HttpStream, RequestProtocolError | ResponseProtocolError], _Commands]
    original = getattr(
        HttpStream.handle_protocol_error, "__wrapped__", HttpStream.handle_protocol_error
    )

    def handle_protocol_error(
        self: HttpStream, event: RequestProtocolError | ResponseProtocolError
    ) -> _Commands:
        flow: http.HTTPFlow | None = getattr(self, "flow", None)  # unset before any request
        seconds = flow.metadata.get(TIMED_OUT) if flow else None
        if isinstance(event, ResponseProtocolError) and seconds and flow and not flow.response:
            # Fed to the stream as if the API server had sent it (mitmproxy's check_body_size
            # feeds its buffered data back the same way).
            response = gateway_timeout(seconds)
            sid = self.stream_id
            yield from self.handle_event(ResponseHeaders(sid, response, end_stream=False))
            yield from self.handle_event(ResponseData(sid, response.content or b""))
            yield from self.handle_event(ResponseEndOfMessage(sid))
            return
        yield from original(self, event)

    handle_protocol_error.__wrapped__ = original  # type: ignore[attr-defined]
    HttpStream.handle_protocol_error = handle_protocol_error  # type: ignore[method-assign]
