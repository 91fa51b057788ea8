"""Limits on open client connections: in total, and per client address.

One mitmproxy process serves every user on one core. A single client opening thousands of
connections (a runaway script, or an attack before any login) must not starve the others,
and the process must not run out of file descriptors.

At the total limit, a new connection is not simply refused: the oldest connection on which no
login has succeeded yet makes room for it (`make_room`). Connections that only hold a slot (no
handshake, half a head, refused requests) cannot keep a real user out, and connections that
logged in are never closed for a newcomer.
"""

from __future__ import annotations

from collections import Counter


class ConnectionLimits:
    def __init__(self, max_total: int, max_per_client: int) -> None:
        self.max_total = max_total
        self.max_per_client = max_per_client
        self._open: Counter[str] = Counter()
        # connection id -> address, in the order admitted (oldest first)
        self._admitted: dict[str, str] = {}
        self._logged_in: set[str] = set()

    @property
    def open(self) -> int:
        return len(self._admitted)

    def admit(self, connection_id: str, address: str) -> str | None:
        """Count a new connection in; or why it is refused (then it is not counted)."""
        if len(self._admitted) >= self.max_total:
            return f"too many connections ({self.max_total})"
        if self._open[address] >= self.max_per_client:
            return f"too many connections from {address} ({self.max_per_client})"
        self._open[address] += 1
        self._admitted[connection_id] = address
        return None

    def logged_in(self, connection_id: str) -> None:
        """A login succeeded on this connection: it is never closed to make room."""
        if connection_id in self._admitted:
            self._logged_in.add(connection_id)

    def has_logged_in(self, connection_id: str) -> bool:
        return connection_id in self._logged_in

    def make_room(self, address: str) -> str | None:
        """At the total limit, the connection to close so that one from `address` fits: the
        oldest one without a login, counted out now. None if there is room, if `address` is at
        its own limit, or if every connection has logged in."""
        if len(self._admitted) < self.max_total or self._open[address] >= self.max_per_client:
            return None
        for connection_id, other in self._admitted.items():
            if connection_id not in self._logged_in:
                self.release(connection_id, other)
                return connection_id
        return None

    def release(self, connection_id: str, address: str) -> None:
        if self._admitted.pop(connection_id, None) is not None:
            self._logged_in.discard(connection_id)
            self._open[address] -= 1
            if not self._open[address]:
                del self._open[address]
