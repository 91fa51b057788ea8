"""HTTP/2 rapid reset (CVE-2023-44487): a client may reset only so many streams.

A stream the client resets frees its slot under SETTINGS_MAX_CONCURRENT_STREAMS at once, so that
limit bounds nothing: a logged-in client sending HEADERS and RST_STREAM in a loop had every pair
forwarded (500 pairs, 500 requests at the API server), as fast as it could send. mitmproxy 12
counts nothing of the kind, and no hook sees a reset before the request has been handled, so
`Http2Server.handle_h2_event` is replaced: every RST_STREAM the client sends spends one token
of its connection's budget of `limits.http2_resets_per_minute` (the seam policy's
`http2_resets_per_minute` when the connection's first reset comes; a token bucket: that many at
once at most, refilled evenly over a minute). Once the budget is spent, the client gets GOAWAY
with ENHANCE_YOUR_CALM and the connection is closed (lingering_close.py: the client still reads
the GOAWAY while it sends on), which also cancels what it had in flight upstream; as Netty's
Http2MaxRstFrameDecoder does (200 per 30 s by default).

A request whose stream was reset while its upstream connection was being opened is not
forwarded either: mitmproxy looks for a reset after each hook, not after connecting, and with
an HTTP/1.1 API server (impersonation mode, or no h2) every HTTP/2 request opens a connection
of its own. That check is upstream_send.py's, which owns the last step before a request is
written.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Generator
from typing import Any

import h2.errors
import h2.events
from mitmproxy.proxy import commands
from mitmproxy.proxy.layers.http._http2 import Http2Server, StreamState

from kube_front_proxy import seam
from kube_front_proxy.seam import lingering_close, original, pin, replace


class ResetBudget:
    """A token bucket: `per_minute` resets at once at most, refilled at `per_minute` a minute."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._tokens = float(per_minute)
        self._last = clock()

    def spend(self) -> bool:
        """Take one token; False once the budget is spent."""
        now = self._clock()
        refill = (now - self._last) * self.per_minute / 60
        self._tokens = min(float(self.per_minute), self._tokens + refill)
        self._last = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


_budgets: weakref.WeakKeyDictionary[Http2Server, ResetBudget] = weakref.WeakKeyDictionary()
_Commands = Generator[commands.Command, Any, Any]


def install() -> None:
    """Idempotent."""
    replace(
        Http2Server,
        "handle_h2_event",
        _limited_handle_h2_event,
        fingerprint="0ae08c5ffcb46e03",
        why="count the client's RST_STREAM frames; GOAWAY ENHANCE_YOUR_CALM past the budget",
    )
    pin(
        Http2Server,
        "protocol_error",
        fingerprint="735e08ff7d5aa690",
        why="sends GOAWAY with the given code and closes the connection (rapid_reset)",
    )


def _limited_handle_h2_event(self: Http2Server, event: h2.events.Event) -> _Commands:
    if isinstance(event, h2.events.StreamReset):
        budget = _budgets.get(self)
        if budget is None:
            budget = _budgets[self] = ResetBudget(seam.policy.http2_resets_per_minute)
        if not budget.spend():
            message = f"client reset more than {budget.per_minute} streams in a minute"
            lingering_close.after_final_answer(self.conn)
            yield from self.protocol_error(message, h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
            return True
        # When END_STREAM and RST_STREAM arrive in one read, mitmproxy forgets the stream at
        # END_STREAM (h2 has closed it by then) and ignores the reset: the request went on
        # upstream. Known again, the reset reaches the request like any other.
        self.streams.setdefault(event.stream_id, StreamState.HEADERS_RECEIVED)
    handled: bool = yield from original(Http2Server, "handle_h2_event")(self, event)
    return handled
