"""Where the lock-out's counters live: the interface, and the store kept in this process.

Each counter is one number per key, its "theoretical arrival time" (GCRA, as in rate limiters):
the moment at which all failures charged to it will have drained. Charging a failure moves it
to max(itself, now) + interval; a counter at or before now is the same as none. That makes a
store easy to share: one float per key, one atomic update per failure, and an expiry at the
value itself (a Redis store: MGET, a short Lua script, PEXPIREAT).

Keys are bytes whose first byte names their kind (lockout.py: address, user, pair, ...). The
store bounds memory per kind without ever forgetting a live counter: see MemoryCounterStore.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Sequence
from typing import Protocol

# Expired counters examined per update, and when a kind is full.
_SWEEP = 2
_SWEEP_WHEN_FULL = 64


class CounterStore(Protocol):
    async def read(self, keys: Sequence[bytes], now: float) -> list[float]:
        """Each key's counter; 0.0 for a key with none."""
        ...

    async def charge(self, charges: Sequence[tuple[bytes, float]], now: float) -> None:
        """Charge one failure to each (key, interval): counter = max(counter, now) + interval.
        Atomic per key: two processes charging the same key at once both count."""
        ...

    async def clear(self, key: bytes) -> None: ...


class MemoryCounterStore:
    """The counters of one process, at most `max_per_kind` keys of each kind.

    A full kind never forgets a live counter to make room: an eviction would let an attacker
    flush a victim's count with failures of his own. Counters that have drained are swept out
    instead, a few on every update (least recently swept first). When a kind is still full,
    a new key of a kind in `shared_when_full` reads and charges one counter shared by all keys
    not tracked (so an attack big enough to fill the table throttles its own newcomers
    together); a new key of any other kind is not counted.
    """

    def __init__(self, max_per_kind: int, shared_when_full: Collection[int]) -> None:
        self.max_per_kind = max_per_kind
        self._shared_when_full = frozenset(shared_when_full)
        self._tables: dict[int, OrderedDict[bytes, float]] = {}
        self._overflow: dict[int, float] = {}

    def __len__(self) -> int:
        return sum(map(len, self._tables.values())) + len(self._overflow)

    def _table(self, kind: int) -> OrderedDict[bytes, float]:
        table = self._tables.get(kind)
        if table is None:
            table = self._tables[kind] = OrderedDict()
        return table

    def _sweep(self, table: OrderedDict[bytes, float], now: float, count: int) -> None:
        for _ in range(min(count, len(table))):
            key, counter = next(iter(table.items()))
            if counter <= now:
                del table[key]
            else:
                table.move_to_end(key)

    def _has_room(self, table: OrderedDict[bytes, float], now: float) -> bool:
        if len(table) >= self.max_per_kind:
            self._sweep(table, now, _SWEEP_WHEN_FULL)
        return len(table) < self.max_per_kind

    async def read(self, keys: Sequence[bytes], now: float) -> list[float]:
        return [self._read(key, now) for key in keys]

    def _read(self, key: bytes, now: float) -> float:
        table = self._tables.get(key[0])
        if table is None:
            return 0.0
        counter = table.get(key)
        if counter is not None:
            return counter
        if key[0] in self._shared_when_full and not self._has_room(table, now):
            return self._overflow.get(key[0], 0.0)
        return 0.0

    async def charge(self, charges: Sequence[tuple[bytes, float]], now: float) -> None:
        for key, interval in charges:
            kind = key[0]
            table = self._table(kind)
            self._sweep(table, now, _SWEEP)
            if key in table or self._has_room(table, now):
                table[key] = max(table.get(key, 0.0), now) + interval
            elif kind in self._shared_when_full:
                self._overflow[kind] = max(self._overflow.get(kind, 0.0), now) + interval

    async def clear(self, key: bytes) -> None:
        self._table(key[0]).pop(key, None)
