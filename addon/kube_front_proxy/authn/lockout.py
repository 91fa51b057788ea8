"""Brute-force limits that an attacker cannot turn against the users they protect.

Failed logins are counted in four budgets, each N failures at once and then N per day (a
counter that drains continuously, never reset by a timer: authn/counter_store.py):

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
would restore the attacker's budget on her name). An attempt is charged when it is admitted (a
reservation: authn/counter_store.py) and refunded when it does not fail, so attempts in flight count
against the budgets until they end and concurrent guesses cannot overrun them, in one process
or across processes sharing a store; identical ones (kubectl's parallel first requests) are one
guess, as the credential cache checks them once.

A remembered login (credentials the proxy knows to be right: a remembered password, a token of
the token file) is decided from what this process knows of the counters, with no charge and
no wait for a shared store; only when that says no, or cannot tell, is the store asked. A guess
is never remembered, so every wrong password is decided by the store.

IPv6 addresses count by /64, which one host usually holds whole; IPv4-mapped addresses as IPv4.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import socket
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from kube_front_proxy.authn.counter_store import Admission, Budget, CounterStore, MemoryCounterStore

DAY = 86400.0

# Key kinds: the first byte of a counter's key.
ADDRESS, PAIR, USER, PAST_BUDGET = b"a"[0], b"p"[0], b"u"[0], b"x"[0]
# Each kind by the name of its budget in config.yaml (authn.lockout).
BUDGET_NAMES = {
    ADDRESS: "per_address",
    PAIR: "per_user_and_address",
    USER: "per_user",
    PAST_BUDGET: "per_address_past_user_budget",
}
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

    decision: asyncio.Future[Admission] | Admission
    pair: bytes  # the (user, address) counter, b"" without a user
    pair_failed: bool  # the pair had failures: a success clears them
    members: int = 0
    settled: bool = False  # failed (the charge stays) or refunded


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


def memory_store(policy: LockoutPolicy) -> MemoryCounterStore:
    """The counters of one process, bounded by policy.max_tracked per kind."""
    return MemoryCounterStore(policy.max_tracked, shared_when_full={ADDRESS, USER, PAST_BUDGET})


class Lockout:
    def __init__(
        self,
        policy: LockoutPolicy,
        store: CounterStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        secret: bytes | None = None,
    ) -> None:
        """store: shared by processes that must count together; secret: the key user names
        are hashed with in counter keys (shared likewise)."""
        self.policy = policy
        self.store = store or memory_store(policy)
        self._clock = clock
        self._secret = secret or secrets.token_bytes(32)
        bursts: dict[int, int] = {k: getattr(policy, n) for k, n in BUDGET_NAMES.items()}
        # kind -> (its keys' first byte, interval, burst)
        self._kinds = {kind: (bytes((kind,)), DAY / n, n) for kind, n in bursts.items()}
        self._groups: dict[tuple[bytes, Hashable], _Group] = {}

    def tracked(self) -> dict[str, int]:
        """Counters held in this process now, by budget (each at most policy.max_tracked);
        safe from another thread."""
        return {name: self.store.tracked(kind) for kind, name in BUDGET_NAMES.items()}

    def _user_id(self, user: str) -> bytes:
        # Hashed: a user name can be 60 KB of anything, and a shared store must not list them.
        raw = user.encode("utf-8", "surrogateescape")
        return hashlib.blake2b(raw, key=self._secret, digest_size=16).digest()

    def _budget(self, kind: int, rest: bytes) -> Budget:
        prefix, interval, burst = self._kinds[kind]
        return Budget(prefix + rest, interval, burst)

    def _budgets(
        self, user: str | None, address: bytes
    ) -> tuple[tuple[Budget, ...], tuple[Budget, ...], bytes]:
        """The budgets an attempt is charged to: all of the strict ones, and the first of the
        others with room (the user name's own, else the address's allowance past it); and the
        key of its (user, address) pair."""
        a = self._budget(ADDRESS, address)
        if user is None:
            return (a,), (), b""
        name = self._user_id(user)
        p = self._budget(PAIR, name + address)
        either = (self._budget(USER, name), self._budget(PAST_BUDGET, address))
        return (a, p), either, p.key

    async def attempt(
        self, user: str | None, client: str, credentials: Hashable, remembered: bool = False
    ) -> Attempt:
        """May a login with these credentials (user None: not a password) be checked now?

        credentials identifies the guess: attempts with equal ones in flight count once.
        remembered: the credentials are known to log in (see the module docstring).
        """
        now = self._clock()
        address = address_of(client)
        key = (address, credentials)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = self._new_group(user, address, remembered, now)
        group.members += 1
        attempt = Attempt(0.0, user, group, key)
        decision = group.decision
        if not isinstance(decision, Admission):
            try:
                # shield: one cancelled request (client gone) must not cancel the others'.
                decision = await asyncio.shield(decision)
            except BaseException:
                self.abandon(attempt)
                raise
        if decision.wait > 0:
            group.settled = True  # nothing was charged
            self._release(attempt)
            return Attempt(decision.wait, user)
        return attempt

    def _new_group(self, user: str | None, address: bytes, remembered: bool, now: float) -> _Group:
        strict, either, pair = self._budgets(user, address)
        store = self.store
        known = store.known_wait(strict, either, now) if remembered else None
        if known is not None and known <= 0:
            pair_failed = bool(pair) and (store.known(pair, now) or 0.0) > now
            return _Group(Admission(0.0), pair, pair_failed)
        decision = store.admit(strict, either, now)
        # Whether the pair has failures is known only once the store has answered: a success
        # clears it anyway (nothing to clear is cheap; a shared store does it with the refund).
        if isinstance(decision, asyncio.Future) and decision.done():
            return _Group(decision.result(), pair, pair_failed=bool(pair))
        return _Group(asyncio.ensure_future(decision), pair, pair_failed=bool(pair))

    def _release(self, attempt: Attempt) -> _Group | None:
        group = attempt._group
        if group is None:
            return None
        attempt._group = None
        group.members -= 1
        if group.members == 0:
            if self._groups.get(attempt._key) is group:
                del self._groups[attempt._key]
            if not group.settled:
                group.settled = True
                self._refund(group)
        return group

    def _refund(self, group: _Group, clear: bytes = b"") -> None:
        decision = group.decision
        if isinstance(decision, Admission):
            if decision.charged or clear:
                self.store.refund(decision.charged, self._clock(), clear)
        elif decision.done():
            if not decision.cancelled() and decision.exception() is None:
                group.decision = decision.result()
                self._refund(group, clear)
        else:
            # Everyone waiting for it left: refund what it reserves once it is decided.
            decision.add_done_callback(lambda _: self._refund(group, clear))

    async def failed(self, attempt: Attempt) -> None:
        group = attempt._group
        try:
            if group is not None and not group.settled:
                group.settled = True
                decision = group.decision
                if isinstance(decision, Admission) and not decision.charged:
                    # Remembered, yet wrong (its htpasswd entry changed in between): a guess
                    # after all, charged as one if its budgets have room.
                    strict, either, _ = self._budgets(attempt.user, attempt._key[0])
                    await self.store.admit(strict, either, self._clock())
        finally:
            self._release(attempt)

    async def succeeded(self, attempt: Attempt, user: str) -> None:
        """The attempt logged user in: its reservation is refunded, and its pair's failures
        are cleared if the password was user's (a certificate may log in someone else while
        a Basic header names another user)."""
        group = attempt._group
        if group is not None and not group.settled:
            group.settled = True
            clear = group.pair if group.pair_failed and user == attempt.user else b""
            self._refund(group, clear)
        self._release(attempt)

    def abandon(self, attempt: Attempt) -> None:
        """The attempt ended without an answer (an internal error, the client left): nothing is
        charged for it unless another attempt of its group settles it."""
        self._release(attempt)
