"""Brute-force limits: failed logins counted per user and per client address.

After `user_failures` failures in a row for one user name, or `client_failures` from one
address, that key is locked: first for `first_seconds`, doubling with every further failure, up
to `max_seconds`. A locked key is refused before any password hash runs, so an attack costs the
proxy a dictionary lookup. Locking a user name does not lock other users; a success resets both
counters of that request. Memory is bounded: the least recently failed keys are forgotten first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class LockoutPolicy:
    user_failures: int = 10
    client_failures: int = 50
    first_seconds: float = 1.0
    max_seconds: float = 900.0
    max_tracked: int = 100_000


@dataclass
class _Failures:
    count: int
    last: float
    locked_until: float


Key = tuple[str, str]


class Lockout:
    def __init__(self, policy: LockoutPolicy, clock: Callable[[], float] = time.monotonic):
        self.policy = policy
        self._clock = clock
        self._failures: OrderedDict[Key, _Failures] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures)

    @staticmethod
    def keys(user: str | None, client: str) -> list[Key]:
        keys = [("client", client)]
        if user is not None:
            keys.append(("user", user))
        return keys

    def retry_after(self, user: str | None, client: str) -> float:
        """Seconds until a login attempt from client as user may be checked; 0 if now."""
        now = self._clock()
        waits = [0.0]
        for key in self.keys(user, client):
            entry = self._failures.get(key)
            if entry is not None:
                waits.append(entry.locked_until - now)
        return max(waits)

    def failed(self, user: str | None, client: str) -> None:
        now = self._clock()
        for key in self.keys(user, client):
            entry = self._failures.pop(key, None)
            if entry is None or now - entry.last > self.policy.max_seconds:
                # A failure long after the last one starts a new series.
                entry = _Failures(0, now, 0.0)
            entry.count += 1
            entry.last = now
            threshold = (
                self.policy.user_failures if key[0] == "user" else self.policy.client_failures
            )
            if entry.count >= threshold:
                doublings = min(entry.count - threshold, 30)
                lock = min(self.policy.first_seconds * 2**doublings, self.policy.max_seconds)
                entry.locked_until = now + lock
            self._failures[key] = entry
        while len(self._failures) > self.policy.max_tracked:
            self._failures.popitem(last=False)

    def succeeded(self, user: str, client: str) -> None:
        for key in self.keys(user, client):
            self._failures.pop(key, None)
