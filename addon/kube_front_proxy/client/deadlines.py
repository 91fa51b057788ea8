"""Deadlines for client connections: the TLS handshake, the request head, the wait in between.

mitmproxy 12 has one timeout for client connections, `tcp_timeout`
(`connections.idle_timeout_seconds`, 4 h, for quiet watches and idle exec shells), and any
byte counts as activity. A client that connects and sends nothing, or half a request head a
byte at a time, held its slot for hours: a few addresses filled `connections.max_total` and
real users were turned away (slowloris). As nginx (`ssl_handshake_timeout`,
`client_header_timeout`, `keepalive_timeout`) and Go's net/http (`ReadHeaderTimeout`,
`IdleTimeout`; kube-apiserver sets 32 s and 90 s) do, each connection has one deadline at a time:

- from its accept, the TLS handshake done within `limits.handshake_timeout_seconds`;
- then its first request head complete within `limits.request_header_timeout_seconds`;
- none while a request is in flight (a watch, `logs -f`, a slow upload of a logged-in user:
  `upstream.response_timeout_seconds` and `tcp_timeout` apply);
- between requests, the next head within `limits.keepalive_timeout_seconds` once a login on
  the connection succeeded, and within the head timeout until then;
- none once upgraded (exec, attach, port-forward).

A connection past its deadline is closed by `close_expired` (with seam/close_connection.py's
`close_client_connection`: mitmproxy has no command for it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger("kube_front_proxy")


@dataclass
class ClientTimeouts:
    """Seconds; mutable so that a reload changes them for the deadlines set afterwards."""

    handshake: float = 10
    request_header: float = 10
    keepalive: float = 90


class ClientDeadlines:
    def __init__(
        self, timeouts: ClientTimeouts, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.timeouts = timeouts
        self._clock = clock
        # client id -> (deadline, what has to happen by then, within how many seconds); the
        # message is written only for a connection that is closed (this runs per request).
        self._deadlines: dict[str, tuple[float, str, float]] = {}
        self._in_flight: dict[str, set[str]] = {}
        self._upgraded: set[str] = set()

    def _set(self, client_id: str, seconds: float, what: str) -> None:
        self._deadlines[client_id] = (self._clock() + seconds, what, seconds)

    def connected(self, client_id: str) -> None:
        self._set(client_id, self.timeouts.handshake, "TLS handshake")

    def handshake_done(self, client_id: str) -> None:
        if client_id in self._deadlines:
            self._set(client_id, self.timeouts.request_header, "request head")

    def request_started(self, client_id: str, flow_id: str) -> None:
        self._deadlines.pop(client_id, None)
        self._in_flight.setdefault(client_id, set()).add(flow_id)

    def request_done(
        self, client_id: str, flow_id: str, *, logged_in: bool, upgraded: bool = False
    ) -> None:
        if upgraded:
            self._upgraded.add(client_id)
        in_flight = self._in_flight.get(client_id)
        if in_flight is not None:
            in_flight.discard(flow_id)
            if in_flight:
                return
        if client_id in self._upgraded:
            return
        self._in_flight.pop(client_id, None)
        if logged_in:
            self._set(client_id, self.timeouts.keepalive, "next request head")
        else:
            self._set(client_id, self.timeouts.request_header, "request head")

    def forget(self, client_id: str) -> None:
        self._deadlines.pop(client_id, None)
        self._in_flight.pop(client_id, None)
        self._upgraded.discard(client_id)

    def expired(self) -> list[tuple[str, str]]:
        """The connections past their deadline, with what they failed to do; forgotten."""
        now = self._clock()
        late = [
            (cid, f"{what} within {seconds:g} s")
            for cid, (due, what, seconds) in self._deadlines.items()
            if due <= now
        ]
        for client_id, _ in late:
            self.forget(client_id)
        return late


async def close_expired(
    deadlines: ClientDeadlines,
    close: Callable[[str], str | None],
) -> None:
    """Close connections past their deadline, checking a few times per shortest timeout."""
    while True:
        t = deadlines.timeouts
        await asyncio.sleep(min(1.0, t.handshake / 4, t.request_header / 4))
        for client_id, what in deadlines.expired():
            address = close(client_id)
            if address:
                logger.info("kube-front-proxy: closed a connection from %s: no %s", address, what)
