"""The verification cache: TTL, invalidation, bounded size, no cached failures, one check."""

from __future__ import annotations

import asyncio
import pickle
import threading
import time

from kube_front_proxy.authn.credential_cache import CredentialCache
from tests.support.waiting import wait_until_async


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Verifier:
    """Counts calls; answers whether the password is 'right'."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls = 0
        self.delay = delay
        self._lock = threading.Lock()

    def __call__(self, password: str) -> bool:
        with self._lock:
            self.calls += 1
        time.sleep(self.delay)  # the scenario: a slow hash (bcrypt) holds its thread
        return password == "right"


async def check(cache: CredentialCache, verifier: Verifier, password: str,
                hashed: str | None = "$apr1$hash", user: str = "alice") -> bool:  # fmt: skip
    return await cache.check(user, password, hashed, lambda: verifier(password))


async def test_success_is_remembered_until_the_ttl() -> None:
    clock, verifier = Clock(), Verifier()
    cache = CredentialCache(ttl=60, max_entries=10, clock=clock)
    assert await check(cache, verifier, "right")
    assert await check(cache, verifier, "right")
    assert verifier.calls == 1
    clock.now += 59
    assert await check(cache, verifier, "right")
    assert verifier.calls == 1
    clock.now += 2
    assert await check(cache, verifier, "right")
    assert verifier.calls == 2


async def test_failures_are_not_remembered() -> None:
    verifier = Verifier()
    cache = CredentialCache(ttl=60, max_entries=10)
    for _ in range(3):
        assert not await check(cache, verifier, "wrong")
    assert verifier.calls == 3 and len(cache) == 0


async def test_a_changed_or_removed_htpasswd_entry_voids_the_memory() -> None:
    verifier = Verifier()
    cache = CredentialCache(ttl=60, max_entries=10)
    assert await check(cache, verifier, "right", hashed="$apr1$old")
    assert await check(cache, verifier, "right", hashed="$apr1$new")  # password changed
    assert verifier.calls == 2
    # The user was deleted: the verifier decides (the real one checks a decoy and says no).
    assert not await cache.check("alice", "right", None, lambda: False)
    assert len(cache) == 0


async def test_a_different_password_or_user_is_a_different_entry() -> None:
    verifier = Verifier()
    cache = CredentialCache(ttl=60, max_entries=10)
    assert await check(cache, verifier, "right", user="alice")
    assert not await check(cache, verifier, "wrong", user="alice")
    assert await check(cache, verifier, "right", user="bob")
    assert verifier.calls == 3


async def test_size_is_bounded_oldest_use_first() -> None:
    verifier = Verifier()
    cache = CredentialCache(ttl=60, max_entries=2)
    for user in ("a", "b"):
        await check(cache, verifier, "right", user=user)
    await check(cache, verifier, "right", user="a")  # a is now the most recently used
    await check(cache, verifier, "right", user="c")  # evicts b
    assert len(cache) == 2 and verifier.calls == 3
    await check(cache, verifier, "right", user="a")
    assert verifier.calls == 3
    await check(cache, verifier, "right", user="b")
    assert verifier.calls == 4


async def test_concurrent_first_requests_verify_once() -> None:
    verifier = Verifier(delay=0.2)
    cache = CredentialCache(ttl=60, max_entries=10)
    results = await asyncio.gather(*(check(cache, verifier, "right") for _ in range(20)))
    assert all(results) and verifier.calls == 1
    wrong = await asyncio.gather(*(check(cache, verifier, "wrong") for _ in range(5)))
    assert not any(wrong) and verifier.calls == 2


async def test_verification_runs_off_the_event_loop() -> None:
    loop_ran = threading.Event()
    threads = []

    def verify() -> bool:
        threads.append(threading.get_ident())
        # Only the event loop sets this: it happens during the check only if the check left
        # the loop free. Run on the loop's thread, this wait would time out and say False.
        return loop_ran.wait(timeout=2)

    async def set_from_the_loop() -> None:
        # Once the check is under way: set earlier, a check blocking the loop would pass too.
        await wait_until_async(lambda: threads)
        loop_ran.set()

    cache = CredentialCache(ttl=60, max_entries=10)
    ok, _ = await asyncio.gather(cache.check("alice", "pw", "$apr1$h", verify), set_from_the_loop())
    assert ok
    assert threads and threads[0] != threading.get_ident()


async def test_ttl_zero_disables_the_cache() -> None:
    verifier = Verifier()
    cache = CredentialCache(ttl=0, max_entries=10)
    for _ in range(2):
        assert await check(cache, verifier, "right")
    assert verifier.calls == 2 and len(cache) == 0


async def test_the_password_is_not_kept() -> None:
    cache = CredentialCache(ttl=60, max_entries=10)
    await cache.check("alice", "Hunter2-secret", "$apr1$x", lambda: True)
    state = pickle.dumps(dict(cache._entries))
    assert b"Hunter2-secret" not in state and b"alice" not in state
