"""The lock-out's counters and the revocation set in a real Redis (state.redis): processes that
share one count as one, atomically; a Redis that is down or stuck costs at most the timeout and
degrades to counters of this process, which are pushed to Redis when it is back; keys expire;
password and TLS (verified). The proxies sharing one Redis are in test_redis_replicas.py."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis import Redis

import devpki
from kube_front_proxy.authn.counter_store import Budget, MemoryCounterStore
from kube_front_proxy.authn.lockout import DAY, Lockout, LockoutPolicy, memory_store
from kube_front_proxy.config.errors import ConfigError
from kube_front_proxy.state.redis_config import RedisSettings
from kube_front_proxy.state.redis_link import PROBE_SECONDS
from kube_front_proxy.state.shared import SharedState, shared_state
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_until_async

POLICY = LockoutPolicy()
# The link notices a change within a probe interval or so.
LINK_TIMEOUT = 5 * PROBE_SECONDS + 5


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    s = RedisServer(tmp_path_factory.mktemp("redis"))
    yield s
    s.stop()


def settings(
    url: str, *, password: Path | None = None, ca: Path | None = None, **kw: object
) -> RedisSettings:
    values: dict[str, object] = {"key_prefix": "test", "timeout": 0.3}
    values["revoked_when_unavailable"] = True
    values.update(kw)
    return RedisSettings(Path("/config.yaml"), url, ca, password, **values)  # type: ignore[arg-type]


@pytest.fixture
async def shared(redis_server: RedisServer) -> AsyncIterator[SharedState]:
    redis_server.client().flushall()
    state = shared_state(settings(redis_server.url), None)
    assert state is not None
    yield state
    await state.link.close()


def process(state: SharedState, policy: LockoutPolicy = POLICY) -> Lockout:
    """The lock-out of one proxy process sharing `state`: its own memory and groups."""
    return Lockout(policy, state.counter_store(memory_store(policy)), secret=state.secret)


async def guess(lock: Lockout, user: str | None, client: str) -> bool:
    attempt = await lock.attempt(user, client, object())
    if attempt.retry_after > 0:
        return False
    await lock.failed(attempt)
    return True


@pytest.mark.parametrize("processes", [1, 2, 3])
async def test_a_budget_is_the_same_with_one_two_or_three_processes(
    shared: SharedState, processes: int
) -> None:
    locks = [process(shared) for _ in range(processes)]
    checked = [await guess(locks[i % processes], "alice", "203.0.113.1") for i in range(15)]
    assert checked == [True] * POLICY.per_user_and_address + [False] * 5
    # Every process refuses the pair now, the right password too (it is not remembered).
    for lock in locks:
        attempt = await lock.attempt("alice", "203.0.113.1", "right")
        assert attempt.retry_after == pytest.approx(DAY / POLICY.per_user_and_address, abs=5)


async def test_concurrent_guesses_across_processes_take_the_budget_once(
    shared: SharedState,
) -> None:
    locks = [process(shared) for _ in range(3)]
    attempts = await asyncio.gather(
        *(locks[i % 3].attempt("alice", "203.0.113.2", i) for i in range(60))
    )
    assert sum(a.retry_after <= 0 for a in attempts) == POLICY.per_user_and_address
    # Identical guesses in flight in one process are one guess, as without Redis.
    lock = process(shared)
    same = await asyncio.gather(*(lock.attempt("bob", "203.0.113.3", "pw") for _ in range(20)))
    assert all(a.retry_after <= 0 for a in same)
    for a in same:
        await lock.failed(a)
    assert await redis_counter(shared, lock, "bob", "203.0.113.3") == pytest.approx(
        DAY / POLICY.per_user_and_address, abs=5
    )


async def redis_counter(state: SharedState, lock: Lockout, user: str, client: str) -> float:
    """Seconds until the (user, client) pair's counter in Redis has drained."""
    from kube_front_proxy.authn.lockout import PAIR, address_of

    key = bytes((PAIR,)) + lock._user_id(user) + address_of(client)
    store = state.counter_store(MemoryCounterStore(1, ()))
    ms = await state.link.client.pttl(store.redis_key(key))
    return max(0, ms) / 1000


async def test_the_lua_admission_decides_as_the_one_in_memory(shared: SharedState) -> None:
    """counter_store.decide and redis_counters.ADMIT: the same rule, in two languages."""
    rng = random.Random(17)
    store = shared.counter_store(MemoryCounterStore(1000, ()))
    memory = MemoryCounterStore(1000, ())
    keys = [bytes((k,)) + bytes([i]) for k in b"apux" for i in range(3)]
    for _ in range(300):
        picked = rng.sample(keys, rng.randint(1, 4))
        budgets = [
            Budget(k, rng.choice([600.0, 3600.0, 8640.0]), rng.randint(1, 4)) for k in picked
        ]
        cut = rng.randint(1, len(budgets))
        strict, either = budgets[:cut], budgets[cut:]
        now = time.monotonic()
        shared_admission = await store.admit(strict, either, now)
        local_admission = memory.admit_now(strict, either, now)
        assert shared_admission.charged == local_admission.charged
        assert shared_admission.wait == pytest.approx(local_admission.wait, abs=1.0)
        if rng.random() < 0.2 and local_admission.charged:
            store.refund(local_admission.charged, now)
            memory.refund(local_admission.charged, now)
            await shared.link.settled()


async def test_a_remembered_login_costs_no_round_trip(
    shared: SharedState, redis_server: RedisServer
) -> None:
    lock = process(shared)
    await guess(lock, "alice", "203.0.113.4")  # a failure: the pair is known here now
    redis = redis_server.client()
    before = commands(redis)
    for _ in range(200):
        attempt = await lock.attempt("alice", "198.51.100.1", "right", remembered=True)
        assert attempt.retry_after <= 0
        await lock.succeeded(attempt, "alice")
    await shared.link.settled()
    assert commands(redis, before) == {"info": 1}  # the first INFO's own
    # A failure costs one command, one round trip: its admission charged it (the rest ran
    # inside that script).
    before = commands(redis)
    await guess(lock, "alice", "198.51.100.2")
    sent = commands(redis, before)
    assert sent.pop("evalsha") == 1 and sent.pop("info") == 1
    assert set(sent) <= {"time", "mget", "set"}


def commands(redis: Redis, before: dict[str, int] | None = None) -> dict[str, int]:
    """Commands Redis ran, by name (those scripts ran included), since `before`."""
    calls = {k[8:]: v["calls"] for k, v in redis.info("commandstats").items()}
    if before is None:
        return calls
    return {k: n - before.get(k, 0) for k, n in calls.items() if n != before.get(k, 0)}


async def test_a_remembered_login_at_a_pair_locked_elsewhere_asks_redis(
    shared: SharedState,
) -> None:
    one, two = process(shared), process(shared)
    # `two` has seen the pair (a failure it counted), then `one` used up the pair's budget.
    assert await guess(two, "alice", "203.0.113.5")
    while await guess(one, "alice", "203.0.113.5"):
        pass
    # The wrong guess at `two` refreshes what it knows; the right password then is refused
    # there too, as in one process.
    assert not await guess(two, "alice", "203.0.113.5")
    attempt = await two.attempt("alice", "203.0.113.5", "right", remembered=True)
    assert attempt.retry_after > 0


async def test_keys_expire_when_their_failures_have_drained(
    shared: SharedState, redis_server: RedisServer
) -> None:
    # 86,400 a day: each failure drains in a second.
    fast = LockoutPolicy(per_address=86400, per_user_and_address=86400, per_user=86400,
                         per_address_past_user_budget=86400)  # fmt: skip
    locks = [process(shared, fast) for _ in range(2)]
    redis = redis_server.client()
    for i in range(3000):
        assert await guess(locks[i % 2], f"user-{i}", f"203.0.{i // 200}.{i % 200}")
    # An address, a pair and a user per guess, each for a second after its failure.
    assert 0 < redis.dbsize() <= 3 * 3000
    ttls = [redis.pttl(key) for key in redis.scan_iter(count=1000)]  # -2: expired meanwhile
    assert -1 not in ttls and max(ttls) <= 1000
    await wait_until_async(lambda: redis.dbsize() == 0, 10, "keys left in redis")


async def test_redis_down_degrades_to_this_process_and_recovers(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    s = RedisServer(tmp_path / "redis")
    state = shared_state(settings(s.url, timeout=0.3), None)
    assert state is not None
    lock = process(state, LockoutPolicy(per_user_and_address=4))
    try:
        assert await guess(lock, "alice", "203.0.113.6")
        s.kill()
        started = time.monotonic()
        # Counted here meanwhile: 3 more, then refused.
        assert [await guess(lock, "alice", "203.0.113.6") for _ in range(4)] == [True] * 3 + [False]
        assert time.monotonic() - started < 2.0  # refused connections: no waiting
        assert state.link.health.degraded and state.link.health.errors >= 1
        # A stuck Redis (stopped, its port open): no call waits longer than the timeout.
        s.start()
        await wait_until_async(lambda: state.link.up, LINK_TIMEOUT)
        # What was counted while it was down reached Redis: another process sees the pair full.
        other = process(state, LockoutPolicy(per_user_and_address=4))
        assert not await guess(other, "alice", "203.0.113.6")
        assert s.process is not None
        os.kill(s.process.proc.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            assert await guess(lock, "bob", "203.0.113.7")
            # The timeout (0.3 s), not redis-py's own (5 s, retried).
            assert time.monotonic() - started < 0.3 + 1.2
            assert state.link.health.degraded
            assert "timeout" in state.link.health.reason.lower()
        finally:
            os.kill(s.process.proc.pid, signal.SIGCONT)
        await wait_until_async(lambda: state.link.up, LINK_TIMEOUT)
    finally:
        await state.link.close()
        s.stop()


async def test_redis_with_a_password(tmp_path: Path) -> None:
    s = RedisServer(tmp_path / "redis", password="s3cret-redis")
    (tmp_path / "password").write_text("s3cret-redis\n")
    (tmp_path / "wrong").write_text("wrong\n")
    right = shared_state(settings(s.url, password=tmp_path / "password"), None)
    wrong = shared_state(settings(s.url, password=tmp_path / "wrong"), None)
    none = shared_state(settings(s.url), None)
    assert right and wrong and none
    try:
        assert await guess(process(right), "alice", "203.0.113.8")
        assert s.client().dbsize() == 3
        for state in (wrong, none):
            assert await guess(process(state), "alice", "203.0.113.8")  # counted here
            assert state.link.health.degraded
            assert "s3cret" not in state.link.health.reason
            assert "wrong" not in state.link.health.reason.replace("WRONGPASS", "")
        assert s.client().dbsize() == 3
        # Processes with the same password hash user names alike; another password does not.
        assert right.secret == shared_state(settings(s.url, password=tmp_path / "password"),
                                            None).secret != wrong.secret  # fmt: skip
    finally:
        for state in (right, wrong, none):
            await state.link.close()
        s.stop()


async def test_redis_over_tls_is_verified(tmp_path: Path) -> None:
    ca = devpki.make_ca("redis-ca")
    ca_file = ca.write(tmp_path, "redis-ca")[0]
    tls = devpki.issue(ca, "redis", dns_names=("localhost",), usages=("server",))
    s = RedisServer(tmp_path / "redis", tls=tls.write(tmp_path, "redis"))
    other_ca = devpki.make_ca("other").write(tmp_path, "other-ca")[0]
    states = {
        "good": shared_state(settings(s.url, ca=ca_file), None),
        # Signed by another CA than the one configured; or by none the system trusts.
        "other CA": shared_state(settings(s.url, ca=other_ca), None),
        "system trust": shared_state(settings(s.url), None),
        # The right CA, but the certificate names localhost, not 127.0.0.1.
        "wrong name": shared_state(
            settings(s.url.replace("localhost", "127.0.0.1"), ca=ca_file), None
        ),
        "no TLS": shared_state(settings(s.url.replace("rediss", "redis")), None),
    }
    try:
        for name, state in states.items():
            assert state is not None
            await guess(process(state), "alice", "203.0.113.9")
            assert state.link.up == (name == "good"), (name, state.link.health)
        reasons = {name: state.link.health.reason for name, state in states.items() if state}
        assert "certificate verify failed" in reasons["other CA"]
        assert "certificate verify failed" in reasons["system trust"]
        assert "match" in reasons["wrong name"]  # "IP address mismatch"
    finally:
        for state in states.values():
            if state:
                await state.link.close()
        s.stop()


def test_configuration_errors_name_the_key(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "bad-ca").write_text("not a certificate\n")
    cases = [
        (settings("redis://h:1/0", password=tmp_path / "missing"), "state.redis.password_file"),
        (settings("redis://h:1/0", password=tmp_path / "empty"), "state.redis.password_file"),
        (settings("rediss://h:1/0", ca=tmp_path / "bad-ca"), "state.redis.ca"),
    ]
    for bad, key in cases:
        with pytest.raises(ConfigError) as error:
            shared_state(bad, None)
        assert error.value.key == key


async def test_revocations_are_shared_and_fail_closed(tmp_path: Path) -> None:
    s = RedisServer(tmp_path / "redis")
    one = shared_state(settings(s.url), None)
    two = shared_state(settings(s.url), None)
    open_ = shared_state(settings(s.url, revoked_when_unavailable=False), None)
    assert one and two and open_
    try:
        assert not await two.revocations.revoked("token-1")
        assert await one.revocations.revoke("token-1", ttl=0.5)
        assert await two.revocations.revoked("token-1")
        assert not await two.revocations.revoked("token-2")
        await wait_until_async(lambda: s.client().dbsize() == 0, timeout=3)  # expired
        assert not await two.revocations.revoked("token-1")
        assert await one.revocations.revoke("token-3", ttl=60)
        s.kill()
        # Redis cannot say: revoked by default (fail closed), or not, as configured; a
        # revocation made in this process is known here whatever Redis says.
        assert await two.revocations.revoked("token-2")
        assert not await open_.revocations.revoked("token-2")
        assert await one.revocations.revoked("token-3")
        assert not await one.revocations.revoke("token-4", ttl=60)
        assert await one.revocations.revoked("token-4")
    finally:
        for state in (one, two, open_):
            await state.link.close()
        s.stop()
