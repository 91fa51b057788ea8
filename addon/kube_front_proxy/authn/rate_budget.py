"""Token buckets for what a client without a login may cost: one per key, plus one in total.

Used for the audit events of refused requests: a client who cannot log in must not be able to
write the audit log faster than a bound (and so rotate away its history). The per-key table is
bounded; forgetting a key only gives it a fresh bucket, while the total bucket still holds.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    at: float

    def take(self, rate: float, burst: float, now: float) -> bool:
        self.tokens = min(burst, self.tokens + (now - self.at) * rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class RateBudget:
    """`per_key` and `total` events a minute (bursts of the same size); 0 allows none."""

    def __init__(
        self,
        per_key: int,
        total: int,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_key = per_key
        self.total = total
        self.max_keys = max_keys
        self.denied = 0  # since the last call of take_denied()
        self._clock = clock
        self._total = _Bucket(total, clock())
        self._keys: OrderedDict[str, _Bucket] = OrderedDict()

    def allow(self, key: str) -> bool:
        now = self._clock()
        bucket = self._keys.pop(key, None) or _Bucket(self.per_key, now)
        self._keys[key] = bucket
        if len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)
        # The key's token is spent first: one noisy key cannot drain the total for others.
        ok = bucket.take(self.per_key / 60, self.per_key, now) and self._total.take(
            self.total / 60, self.total, now
        )
        if not ok:
            self.denied += 1
        return ok

    def take_denied(self) -> int:
        denied, self.denied = self.denied, 0
        return denied
