"""Limits on open client connections: in total, and per client address.

One mitmproxy process serves every user on one core. A single client opening thousands of
connections (a runaway script, or an attack before any login) must not starve the others,
and the process must not run out of file descriptors.
"""

from __future__ import annotations

from collections import Counter


class ConnectionLimits:
    def __init__(self, max_total: int, max_per_client: int) -> None:
        self.max_total = max_total
        self.max_per_client = max_per_client
        self._open: Counter[str] = Counter()
        self._admitted: set[str] = set()

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
        self._admitted.add(connection_id)
        return None

    def release(self, connection_id: str, address: str) -> None:
        if connection_id in self._admitted:
            self._admitted.remove(connection_id)
            self._open[address] -= 1
            if not self._open[address]:
                del self._open[address]
