"""Brute-force limits that an attacker cannot turn against the users they protect.

Failed logins are counted in four budgets, each N failures at once and then N per day (a
counter that drains continuously, never reset by a timer: counter_store.py):

- per client address, all user names together (`per_address`);
- per user name and address (`per_user_and_address`);
- per user name, from all addresses together (`per_user`), a large budget;
- per address, for user names past their per_user budget (`per_address_past_user_budget`),
  a small one.

An attempt is refused (429, before any hash runs) when its address or its (user, address) pair
has no budget left. A user name past its own budget does not lock its user out: a password
for it is still checked from any address with budget left for it, and each address has only
a few such attempts a day. So an attacker who does not know the password cannot refuse a user
at an address with no failures (Keycloak and fail2ban separate per-user from per-address
throttling for the same reason, OWASP ASVS V2.2), while the guesses per user name stay bounded:
per_user a day, plus per_address_past_user_budget for every further address the attacker uses.

A success clears only its own (user, address) pair: not the address (another user's login from
it must not restore an attacker's budget there) and not the user name (the user's own requests
would restore the attacker's budget on her name). Attempts in flight count against the budgets
until they end, so concurrent guesses cannot overrun them; identical ones (kubectl's parallel
first requests) are one guess, as the credential cache checks them once.

IPv6 addresses count by /64, which one host usually holds whole; IPv4-mapped addresses as IPv4.
"""

from __future__ import annotations

import hashlib
import secrets
import socket
import time
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from .counter_store import CounterStore, MemoryCounterStore

DAY = 86400.0

# Key kinds: the first byte of a counter's key.
ADDRESS, PAIR, USER, PAST_BUDGET = b"a"[0], b"p"[0], b"u"[0], b"x"[0]
_V4_MAPPED = bytes(10) + b"\xff\xff"


@dataclass(frozen=True)
class LockoutPolicy:
    """Failures per day (and at once) of each budget; max_tracked bounds memory per kind."""

    per_address: int = 50
    per_user_and_address: int = 10
    per_user: int = 100
    per_address_past_user_budget: int = 3
    max_tracked: int = 100_000


@dataclass
class _Group:
    """Identical attempts (same address and credentials) in flight: one guess."""

    keys: tuple[bytes, ...]  # charged on failure
    pair: bytes  # the (user, address) counter, b"" without a user
    pair_failed: bool  # the pair had failures: a success clears them
    members: int = 0
    charged: bool = False


@dataclass
class Attempt:
    """One login attempt, admitted or refused; settle an admitted one with failed, succeeded
    or abandon."""

    retry_after: float  # > 0: refused, try again in this many seconds
    user: str | None = None
    _group: _Group | None = field(default=None, repr=False)
    _key: tuple[bytes, Hashable] = field(default=(b"", None), repr=False)


def address_of(client: str) -> bytes:
    """The packed address the budgets count by: IPv4, or an IPv6 /64."""
    try:
        return socket.inet_pton(socket.AF_INET, client)
    except OSError:
        pass
    try:
        packed = socket.inet_pton(socket.AF_INET6, client.partition("%")[0])
    except OSError:
        return client.encode("utf-8", "surrogateescape")
    if packed[:12] == _V4_MAPPED:
        return packed[12:]
    return packed[:8]


class Lockout:
    def __init__(
        self,
        policy: LockoutPolicy,
        store: CounterStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        secret: bytes | None = None,
    ) -> None:
        """store: shared by processes that must count together (with their clocks in step);
        secret: the key user names are hashed with in counter keys (shared likewise)."""
        self.policy = policy
        self.store = store or MemoryCounterStore(
            policy.max_tracked, shared_when_full={ADDRESS, USER, PAST_BUDGET}
        )
        self._clock = clock
        self._secret = secret or secrets.token_bytes(32)
        p = policy
        self._intervals = {
            ADDRESS: DAY / p.per_address,
            PAIR: DAY / p.per_user_and_address,
            USER: DAY / p.per_user,
            PAST_BUDGET: DAY / p.per_address_past_user_budget,
        }
        self._bursts = {
            ADDRESS: p.per_address,
            PAIR: p.per_user_and_address,
            USER: p.per_user,
            PAST_BUDGET: p.per_address_past_user_budget,
        }
        self._groups: dict[tuple[bytes, Hashable], _Group] = {}
        self._in_flight: Counter[bytes] = Counter()  # key -> distinct guesses in flight

    def _user_id(self, user: str) -> bytes:
        # Hashed: a user name can be 60 KB of anything, and a shared store must not list them.
        raw = user.encode("utf-8", "surrogateescape")
        return hashlib.blake2b(raw, key=self._secret, digest_size=16).digest()

    def _wait(self, key: bytes, counter: float, now: float) -> float:
        """Seconds until key has room for one more failure, counting the guesses in flight
        as failures (<= 0: it has room now)."""
        kind = key[0]
        pending = self._in_flight[key] - self._bursts[kind] + 1
        return max(counter, now) + pending * self._intervals[kind] - now

    async def attempt(self, user: str | None, client: str, credentials: Hashable) -> Attempt:
        """May a login with these credentials (user None: not a password) be checked now?

        credentials identifies the guess: attempts with equal ones in flight count once.
        """
        now = self._clock()
        address = address_of(client)
        key = (address, credentials)
        group = self._groups.get(key)
        if group is None:
            keys, wait, pair, pair_failed = await self._decide(user, address, now)
            if wait > 0:
                return Attempt(wait, user)
            # The read may have waited for a shared store: the same guess may be in by now.
            group = self._groups.get(key)
            if group is None:
                group = self._groups[key] = _Group(keys, pair, pair_failed)
                self._in_flight.update(keys)
        group.members += 1
        return Attempt(0.0, user, group, key)

    async def _decide(
        self, user: str | None, address: bytes, now: float
    ) -> tuple[tuple[bytes, ...], float, bytes, bool]:
        """The counters an attempt would charge, how long until it may, its pair and whether
        that pair has failures."""
        a = bytes((ADDRESS,)) + address
        if user is None:
            (counter,) = await self.store.read([a], now)
            return (a,), self._wait(a, counter, now), b"", False
        name = self._user_id(user)
        p = bytes((PAIR,)) + name + address
        u = bytes((USER,)) + name
        x = bytes((PAST_BUDGET,)) + address
        ca, cp, cu, cx = await self.store.read([a, p, u, x], now)
        strict = max(self._wait(a, ca, now), self._wait(p, cp, now))
        user_wait = self._wait(u, cu, now)
        if user_wait <= 0:
            return (a, p, u), strict, p, cp > now
        # Past the user name's budget: checked only while this address has some left for it.
        wait = max(strict, min(user_wait, self._wait(x, cx, now)))
        return (a, p, x), wait, p, cp > now

    def _release(self, attempt: Attempt) -> _Group | None:
        group = attempt._group
        if group is None:
            return None
        attempt._group = None
        group.members -= 1
        if group.members == 0:
            if self._groups.get(attempt._key) is group:
                del self._groups[attempt._key]
            in_flight = self._in_flight
            for key in group.keys:
                if in_flight[key] > 1:
                    in_flight[key] -= 1
                else:
                    del in_flight[key]
        return group

    async def failed(self, attempt: Attempt) -> None:
        group = attempt._group
        try:
            if group is not None and not group.charged:
                group.charged = True
                charges = [(key, self._intervals[key[0]]) for key in group.keys]
                # Still in flight while it is charged: nothing slips in between.
                await self.store.charge(charges, self._clock())
        finally:
            self._release(attempt)

    async def succeeded(self, attempt: Attempt, user: str) -> None:
        """The attempt logged user in: clears its pair's failures if the password was user's
        (a certificate may log in someone else while a Basic header names another user)."""
        group = self._release(attempt)
        if group is not None and group.pair_failed and user == attempt.user:
            group.pair_failed = False
            await self.store.clear(group.pair)

    def abandon(self, attempt: Attempt) -> None:
        """The attempt ended without an answer (an internal error): nothing is charged."""
        self._release(attempt)
