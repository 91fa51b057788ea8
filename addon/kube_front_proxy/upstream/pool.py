"""Several API servers behind one proxy: which one gets a request, and which ones are usable.

Plain state, no mitmproxy. A server is usable while its last active check said ready and no
passive ejection is running. Passive ejection follows Envoy's outlier detection: a connection
failure ejects the server for eject_seconds, doubled for each further failure in a row (at most
MAX_DOUBLINGS times); a response from it, or a passed active check, ends the ejection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass

logger = logging.getLogger("kube_front_proxy")

Address = tuple[str, int]
Probe = Callable[[Address], Awaitable[bool]]

ROUND_ROBIN = "round_robin"
LEAST_OUTSTANDING = "least_outstanding"
MAX_DOUBLINGS = 5


@dataclass
class Server:
    """One API server and what the proxy knows about it."""

    address: Address
    outstanding: int = 0  # requests sent to it that have no response head yet
    failures: int = 0  # connection failures in a row
    ejected_until: float = 0.0
    ready: bool = True

    def usable(self, now: float) -> bool:
        return self.ready and now >= self.ejected_until


class ServerPool:
    """Picks a server per request: round robin, or the fewest outstanding requests.

    Ties are broken in round-robin order, so that equal servers share the load even when a
    single client sends one request at a time.
    """

    def __init__(
        self,
        addresses: Sequence[Address],
        balance: str,
        eject_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if balance not in (ROUND_ROBIN, LEAST_OUTSTANDING):
            raise ValueError(f"unknown balance {balance!r}")
        self.servers = [Server(a) for a in addresses]
        self._by_address = {s.address: s for s in self.servers}
        self.balance = balance
        self.eject_seconds = eject_seconds
        self._clock = clock
        self._next = 0

    def acquire(self, exclude: Collection[Address] = ()) -> Server | None:
        """The server for the next request (counted as outstanding), or None if none is usable."""
        now = self._clock()
        n = len(self.servers)
        order = [self.servers[(self._next + i) % n] for i in range(n)]
        candidates = [s for s in order if s.address not in exclude and s.usable(now)]
        if n == 1 and not exclude:
            # nginx's rule: a lone server is never taken out. With nowhere else to send the
            # request, trying it (502 if it is down) beats refusing while it may be back.
            candidates = order
        if not candidates:
            return None
        if self.balance == LEAST_OUTSTANDING:
            chosen = min(candidates, key=lambda s: s.outstanding)
        else:
            chosen = candidates[0]
        self._next = (self.servers.index(chosen) + 1) % n
        chosen.outstanding += 1
        return chosen

    def release(self, address: Address) -> None:
        """The request's response head arrived, or the request is over without one."""
        server = self._by_address[address]
        server.outstanding = max(0, server.outstanding - 1)

    def answered(self, address: Address) -> None:
        """The server sent a response: whatever failed before is over."""
        server = self._by_address[address]
        server.failures = 0
        server.ejected_until = 0.0

    def connection_failed(self, address: Address) -> None:
        """Passive ejection: the server refused or dropped a connection before answering."""
        server = self._by_address[address]
        server.failures += 1
        if self.eject_seconds > 0:
            doublings = min(server.failures - 1, MAX_DOUBLINGS)
            server.ejected_until = self._clock() + self.eject_seconds * 2**doublings
            logger.warning(
                "kube-front-proxy: API server %s:%s ejected for %ss after %s failure(s)",
                *address,
                self.eject_seconds * 2**doublings,
                server.failures,
            )

    def checked(self, address: Address, ready: bool) -> None:
        """The result of an active check; a passed one ends a passive ejection."""
        server = self._by_address[address]
        if ready != server.ready:
            logger.warning(
                "kube-front-proxy: API server %s:%s is %s",
                *address,
                "ready again" if ready else "not ready",
            )
        server.ready = ready
        if ready:
            server.ejected_until = 0.0


async def check_forever(pool: ServerPool, probe: Probe, interval: float) -> None:
    """Probe every server every interval seconds (all at once) until cancelled."""
    while True:
        results = await asyncio.gather(
            *(probe(s.address) for s in pool.servers), return_exceptions=True
        )
        for server, result in zip(pool.servers, results, strict=True):
            # A probe that raised is a failed check, not a crashed checker.
            pool.checked(server.address, result is True)
        await asyncio.sleep(interval)
