"""Upstream response timeout: an API server that does not start its answer in time gets a 504.

mitmproxy 12 waits for a response as long as the connection lives. Here each request forwarded
upstream gets a timer, started when mitmproxy has the whole request (`request` hook) and
stopped when the response headers arrive (`responseheaders`): a watch, a followed log or an
exec session is exempt from then on. When the timer fires, the flow is marked (`TIMED_OUT`)
and its upstream connection closed (seam/close_connection.py). mitmproxy would then fail the
request with a 502; seam/upstream_failures.py answers a marked one with the 504 Status below
instead, as if the API server had sent it.

kube-apiserver answers a request that outlives its --request-timeout (60 s) the same way: 504,
reason Timeout (k8s.io/apiserver/pkg/server/filters/timeout.go, `baseTimeoutWriter.timeout`,
with `apierrors.NewTimeoutError`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from mitmproxy import http

from kube_front_proxy.status import status_response

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
