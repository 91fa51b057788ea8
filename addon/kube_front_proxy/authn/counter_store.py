"""Where the lock-out's counters live: the interface, and the store kept in this process.

Each counter is one number per key, its "theoretical arrival time" (GCRA, as in rate limiters):
the moment at which all failures charged to it will have drained. Charging a failure moves it
to max(itself, now) + interval; a counter at or before now is the same as none. That makes a
store easy to share: one float per key, one atomic update per attempt, and an expiry at the
value itself (authn/redis_counters.py).

An attempt is admitted against a set of budgets in one step that also charges them (a
reservation): all of the strict budgets must have room, and one of the `either` budgets (the
first that has room) is charged with them. A failure keeps the charge; a success or an abandoned
attempt refunds it. Deciding and charging in one atomic step is what keeps concurrent guesses,
in one process or in several sharing a store, from all seeing the same room.

Keys are bytes whose first byte names their kind (authn/lockout.py: address, user, pair, ...). The
store bounds memory per kind without ever forgetting a live counter: see MemoryCounterStore.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Collection, Sequence
from typing import NamedTuple, Protocol

# Expired counters examined per update, and when a kind is full.
_SWEEP = 2
_SWEEP_WHEN_FULL = 64


# NamedTuples, not dataclasses: a login builds several per request (a third of the cost).
class Budget(NamedTuple):
    """One counter an attempt is charged to: `burst` failures at once, then one per `interval`
    seconds."""

    key: bytes
    interval: float
    burst: int

    def wait(self, counter: float, now: float) -> float:
        """Seconds until the counter has room for one more failure (<= 0: room now)."""
        return max(counter, now) + (1 - self.burst) * self.interval - now


class Admission(NamedTuple):
    wait: float  # > 0: refused, try again in this many seconds
    charged: tuple[Budget, ...] = ()  # reserved: kept on failure, refunded otherwise


def decide(
    strict: Sequence[Budget], either: Sequence[Budget], counters: Sequence[float], now: float
) -> Admission:
    """The admission of an attempt given its budgets' counters (strict ones first).

    redis_counters.ADMIT is the same rule in Lua; a test keeps the two in step.
    """
    wait = max([b.wait(c, now) for b, c in zip(strict, counters, strict=False)])
    chosen: tuple[Budget, ...] = ()
    if either:
        waits = [b.wait(c, now) for b, c in zip(either, counters[len(strict) :], strict=True)]
        for budget, budget_wait in zip(either, waits, strict=True):
            if budget_wait <= 0:
                chosen = (budget,)
                break
        else:
            wait = max(wait, min(waits))
    return Admission(wait, (*strict, *chosen) if wait <= 0 else ())


class CounterStore(Protocol):
    def admit(
        self, strict: Sequence[Budget], either: Sequence[Budget], now: float
    ) -> Awaitable[Admission]:
        """Decide and, if admitted, charge in one atomic step (see the module docstring).

        An awaitable that may already be done: a store in memory never makes its caller wait.
        """
        ...

    def known_wait(
        self, strict: Sequence[Budget], either: Sequence[Budget], now: float
    ) -> float | None:
        """What admit would say, from what this process knows, without charging or waiting;
        None when it cannot tell (then ask admit)."""
        ...

    def known(self, key: bytes, now: float) -> float | None:
        """The counter of key as this process knows it; None when it cannot tell."""
        ...

    def tracked(self, kind: int) -> int:
        """Keys of this kind held in this process's memory now; safe from another thread."""
        ...

    def refund(self, charged: Sequence[Budget], now: float, clear: bytes = b"") -> None:
        """Undo a reservation (the attempt did not fail), and drop the counter `clear` if
        given. Takes effect in this process at once; a shared store follows in the background."""
        ...


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

    def tracked(self, kind: int) -> int:
        """Keys of this kind held now (at most max_per_kind); safe from another thread."""
        return len(self._tables.get(kind, ()))

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

    def _read(self, key: bytes, now: float) -> float:
        counter = self.known(key, now)
        if counter is not None:
            return counter
        return self._overflow.get(key[0], 0.0) if key[0] in self._shared_when_full else 0.0

    def admit(
        self, strict: Sequence[Budget], either: Sequence[Budget], now: float
    ) -> Awaitable[Admission]:
        done = asyncio.get_running_loop().create_future()
        done.set_result(self.admit_now(strict, either, now))
        return done

    def admit_now(
        self, strict: Sequence[Budget], either: Sequence[Budget], now: float
    ) -> Admission:
        counters = [self._read(b.key, now) for b in (*strict, *either)]
        admission = decide(strict, either, counters, now)
        for budget in admission.charged:
            self._charge(budget, now)
        return admission

    def _charge(self, budget: Budget, now: float) -> None:
        key, kind = budget.key, budget.key[0]
        table = self._table(kind)
        self._sweep(table, now, _SWEEP)
        if key in table or self._has_room(table, now):
            table[key] = max(table.get(key, 0.0), now) + budget.interval
        elif kind in self._shared_when_full:
            self._overflow[kind] = max(self._overflow.get(kind, 0.0), now) + budget.interval

    def known_wait(
        self, strict: Sequence[Budget], either: Sequence[Budget], now: float
    ) -> float | None:
        counters = [self._read(b.key, now) for b in (*strict, *either)]
        return decide(strict, either, counters, now).wait

    def known(self, key: bytes, now: float) -> float | None:
        """The counter if tracked, 0.0 if it has none; None when the key is not tracked
        because its kind is full (the store cannot tell what a shared store holds for it)."""
        table = self._tables.get(key[0])
        if table is None:
            return 0.0
        counter = table.get(key)
        if counter is not None:
            return counter
        return None if not self._has_room(table, now) else 0.0

    def record(self, key: bytes, counter: float, now: float) -> None:
        """Set a counter to what a shared store said it is (if there is room for it)."""
        table = self._table(key[0])
        if counter <= now:
            table.pop(key, None)
        elif key in table or self._has_room(table, now):
            table[key] = counter

    def refund(self, charged: Sequence[Budget], now: float, clear: bytes = b"") -> None:
        for budget in charged:
            kind = budget.key[0]
            table = self._tables.get(kind)
            if table is not None and budget.key in table:
                table[budget.key] -= budget.interval
            elif kind in self._overflow:
                self._overflow[kind] -= budget.interval
        if clear:
            self._table(clear[0]).pop(clear, None)
