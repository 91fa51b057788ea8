"""Brute-force limits (authn/lockout.py), driven with a fake clock: the budgets an attacker gets per
day, and that they cannot be used to lock a user out or be reset. The attacks against the real
proxy are in tests/attacks/test_lockout_abuse.py."""

from __future__ import annotations

import base64
import tracemalloc
from collections.abc import Hashable, Sequence
from pathlib import Path

from kube_front_proxy.authn.lockout import DAY, Lockout, LockoutPolicy, address_of
from tests.support.harness import start_emulator, start_proxy_for
from tests.support.users import basic_header, password_of

DEFAULT = LockoutPolicy()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def lockout(policy: LockoutPolicy = DEFAULT, clock: Clock | None = None) -> Lockout:
    return Lockout(policy, clock=clock or Clock())


async def guess(lock: Lockout, user: str | None, client: str, credentials: Hashable = None) -> bool:
    """A wrong password: whether it was checked (True) or refused unchecked."""
    attempt = await lock.attempt(user, client, credentials if credentials is not None else object())
    if attempt.retry_after > 0:
        return False
    await lock.failed(attempt)
    return True


async def log_in(lock: Lockout, user: str, client: str) -> bool:
    """The right password: whether it was checked (and so let in)."""
    attempt = await lock.attempt(user, client, ("right", user))
    if attempt.retry_after > 0:
        return False
    await lock.succeeded(attempt, user)
    return True


async def greedy(
    lock: Lockout, clock: Clock, tries: Sequence[tuple[str | None, str]], days: int
) -> list[int]:
    """An attacker who sends a wrong password the moment any of its (user, address) tries is
    allowed one, taking turns; the guesses checked in each day. A user name "*" is a new one
    every time."""
    counts = [0] * days
    fresh = turn = 0
    while clock.now < days * DAY:
        waits = []
        for i in range(len(tries)):
            user, client = tries[(turn + i) % len(tries)]
            if user == "*":
                fresh += 1
                user = f"user-{fresh}"
            attempt = await lock.attempt(user, client, object())
            if attempt.retry_after <= 0:
                counts[int(clock.now // DAY)] += 1
                await lock.failed(attempt)
                turn += i + 1
                break
            waits.append(attempt.retry_after)
        else:
            clock.now += min(waits)
    return counts


# The figures docs/security.md states (Security figures): guesses checked in the first, second and
# third day of a greedy attack. N at once, then N a day: 2N - 1 in the first 24 h.
async def test_budget_per_address_per_day() -> None:
    clock = Clock()
    lock = lockout(clock=clock)
    assert await greedy(lock, clock, [("*", "203.0.113.1")], 3) == [99, 50, 50]


async def test_budget_per_user_name_and_address_per_day() -> None:
    clock = Clock()
    lock = lockout(clock=clock)
    assert await greedy(lock, clock, [("alice", "203.0.113.1")], 3) == [19, 10, 10]


async def test_budget_per_user_name_per_day_from_many_addresses() -> None:
    # 100 a day (and 100 at once), then 3 a day (and 3 at once) per address it uses past that.
    clock = Clock()
    lock = lockout(clock=clock)
    addresses = [f"203.0.113.{i}" for i in range(30)]
    counts = await greedy(lock, clock, [("alice", a) for a in addresses], 3)
    assert counts == [199 + 5 * 30, 100 + 3 * 30, 100 + 3 * 30]


async def test_an_attacker_cannot_lock_a_user_out_of_an_address_with_no_failures() -> None:
    lock = lockout()
    attackers = [f"203.0.113.{i}" for i in range(40)]
    while any([await guess(lock, "alice", a) for a in attackers]):
        pass
    # alice's name is past its budget, and every attacking address has used its share...
    for address in attackers:
        assert not await guess(lock, "alice", address)
    # ...but alice from her own address is checked, now and whenever the attack goes on.
    assert await log_in(lock, "alice", "198.51.100.7")
    assert await log_in(lock, "alice", "198.51.100.8")
    # A password for her name from a fresh address is checked: 3 of them a day per address.
    checked = [await guess(lock, "alice", "192.0.2.1") for _ in range(5)]
    assert checked == [True, True, True, False, False]
    # Other users are not affected at all.
    assert await log_in(lock, "bob", attackers[0])


async def test_another_users_login_does_not_restore_an_address_budget() -> None:
    lock = lockout()
    checked = 0
    for i in range(200):
        if i % 20 == 0:
            assert await log_in(lock, "mallory", "203.0.113.5") == (checked < 50)
        checked += await guess(lock, f"victim-{i}", "203.0.113.5")
    assert checked == DEFAULT.per_address


async def test_the_users_own_logins_do_not_restore_the_budget_on_her_name() -> None:
    lock = lockout()
    checked = 0
    for i in range(300):
        assert await log_in(lock, "alice", "198.51.100.7")
        checked += await guess(lock, "alice", f"203.0.113.{i % 50}")
    # per_user, and then each of the 50 addresses its 3 past the budget.
    assert checked == 100 + 3 * 50


async def test_a_success_clears_only_its_own_pair() -> None:
    policy = LockoutPolicy(per_address=15, per_user_and_address=10)
    lock = lockout(policy)
    assert [await guess(lock, "alice", "10.0.0.1") for _ in range(10)] == [True] * 10
    assert not await guess(lock, "alice", "10.0.0.1")
    # Not cleared by a certificate that logs in someone else with alice's Basic header.
    attempt = await lock.attempt("alice", "10.0.0.1", "x")
    assert attempt.retry_after > 0
    assert await log_in(lock, "bob", "10.0.0.1")
    assert not await guess(lock, "alice", "10.0.0.1")
    # alice herself: the pair starts over, the address does not (15 - 10 left).
    lock2 = lockout(policy)
    for _ in range(9):
        await guess(lock2, "alice", "10.0.0.1")
    attempt = await lock2.attempt("alice", "10.0.0.1", "cert")
    await lock2.succeeded(attempt, "carol")  # a certificate's user, not alice
    assert [await guess(lock2, "alice", "10.0.0.1") for _ in range(2)] == [True, False]
    lock3 = lockout(policy)
    for _ in range(9):
        await guess(lock3, "alice", "10.0.0.1")
    assert await log_in(lock3, "alice", "10.0.0.1")
    assert [await guess(lock3, "alice", "10.0.0.1") for _ in range(7)] == [True] * 6 + [False]


async def test_flooding_the_table_does_not_forget_a_victim() -> None:
    policy = LockoutPolicy(max_tracked=100)
    clock = Clock()
    lock = lockout(policy, clock=clock)
    for _ in range(10):
        await guess(lock, "alice", "10.0.0.1")
    for i in range(50):
        await guess(lock, f"u{i}", "10.0.0.2")
    # 20 times the table's size of other failing addresses and user names.
    for i in range(2000):
        await guess(lock, f"flood-{i}", f"10.1.{i // 250}.{i % 250}")
        clock.now += 0.5  # 1,000 s in all: less than one refill of any budget
    assert not await guess(lock, "alice", "10.0.0.1")
    assert not await guess(lock, "someone", "10.0.0.2")
    assert all(held <= policy.max_tracked for held in lock.tracked().values())


async def test_a_full_table_makes_new_failing_addresses_share_one_budget() -> None:
    policy = LockoutPolicy(max_tracked=10)
    clock = Clock()
    lock = lockout(policy, clock=clock)
    for i in range(10):
        assert await guess(lock, "x", f"10.0.0.{i}")
    # Untracked addresses share one per_address budget...
    checked = [await guess(lock, f"n{i}", f"10.2.0.{i}") for i in range(60)]
    assert sum(checked) == policy.per_address
    # ...which drains like any other: a day later there is room again.
    clock.now += DAY
    assert await guess(lock, "n", "10.3.0.1")


async def test_concurrent_guesses_count_before_they_end() -> None:
    lock = lockout()
    distinct = [await lock.attempt("alice", "10.0.0.1", i) for i in range(20)]
    assert sum(a.retry_after <= 0 for a in distinct) == DEFAULT.per_user_and_address
    # The same credentials again are the same guess: they share its check and its count.
    same = [await lock.attempt("alice", "10.0.0.1", 0) for _ in range(20)]
    assert all(a.retry_after <= 0 for a in same)
    for attempt in distinct + same:
        if attempt.retry_after <= 0:
            await lock.failed(attempt)
    assert (await lock.attempt("alice", "10.0.0.1", "next")).retry_after == DAY / 10


async def test_kubectls_parallel_first_requests_are_one_attempt() -> None:
    lock = lockout(LockoutPolicy(per_user_and_address=1))
    attempts = [await lock.attempt("alice", "10.0.0.1", "same") for _ in range(30)]
    assert all(a.retry_after <= 0 for a in attempts)
    for attempt in attempts:
        await lock.succeeded(attempt, "alice")
    assert await log_in(lock, "alice", "10.0.0.1")


async def test_an_abandoned_attempt_is_not_charged() -> None:
    lock = lockout(LockoutPolicy(per_user_and_address=1))
    for _ in range(3):
        attempt = await lock.attempt("alice", "10.0.0.1", object())
        assert attempt.retry_after <= 0
        lock.abandon(attempt)
    assert await guess(lock, "alice", "10.0.0.1")


async def test_attempts_without_a_user_name_count_against_the_address() -> None:
    lock = lockout(LockoutPolicy(per_address=3))
    assert [await guess(lock, None, "10.0.0.1") for _ in range(4)] == [True] * 3 + [False]
    assert await log_in(lock, "alice", "10.0.0.2")
    assert not await log_in(lock, "alice", "10.0.0.1")


def test_addresses_count_by_ipv4_and_ipv6_64() -> None:
    assert address_of("::ffff:10.0.0.1") == address_of("10.0.0.1")
    assert address_of("2001:db8::1") == address_of("2001:db8::ffff:1")
    assert address_of("2001:db8::1") != address_of("2001:db8:0:1::1")
    assert address_of("10.0.0.1") != address_of("10.0.0.2")
    assert address_of("fe80::1%eth0") == address_of("fe80::2")


async def test_memory_per_tracked_counter() -> None:
    policy = LockoutPolicy(max_tracked=5_000)
    lock = lockout(policy)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(policy.max_tracked):
        await guess(lock, f"user-{i}" * 8, f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    held = sum(lock.tracked().values())
    assert held == 3 * policy.max_tracked
    # About 146 bytes a counter: 4 kinds x 100,000 (the default) is at most about 60 MB.
    assert used / held < 160, used / held


def test_lockout_end_to_end(pki: Path, tmp_path: Path) -> None:
    emulator = start_emulator(pki, tmp_path / "emulator")
    proxy = start_proxy_for(
        pki, tmp_path / "proxy", emulator.port, authn={"lockout": {"per_user_and_address": 3}}
    )
    try:
        statuses = [
            proxy.raw("GET", "/api", [basic_header("bcrypt-user", f"guess-{i}")])[0]
            for i in range(3)
        ]
        assert statuses == [401, 401, 401]
        before = len(emulator.requests())
        # Locked at this address: even the right password is refused, without running bcrypt.
        status, headers, body = proxy.raw(
            "GET", "/api", [basic_header("bcrypt-user", password_of("bcrypt-user"))]
        )
        assert status == 429
        assert "Retry-After" not in headers  # 8 h: kubectl says so at once, it does not wait
        assert b'"reason":"TooManyRequests"' in body and b'"retryAfterSeconds":28800' in body
        assert len(emulator.requests()) == before
        # The same user from another address, and other users, are not locked out.
        ok = basic_header("bcrypt-user", password_of("bcrypt-user"))
        assert proxy.raw("GET", "/api", [ok], source="127.0.0.2")[0] == 200
        assert proxy.whoami("alice")["username"] == "alice"
    finally:
        proxy.process.stop()
        emulator.process.stop()
    assert "locked out" in proxy.process.output()
    assert base64.b64encode(b"bcrypt-user:guess-0").decode() not in proxy.process.output()
