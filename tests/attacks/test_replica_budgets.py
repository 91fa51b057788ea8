"""Brute force spread over replicas: N proxy processes, N times the guesses.

Before: every proxy process counted failed logins by itself, so an attacker whose connections
went to three replicas had three times every budget (15 wrong passwords over three processes
were all checked, 5 each, where one process refuses after 10), and a pair locked on one replica
was checked on the next. Now (state.redis: authn/redis_counters.py) processes sharing one Redis
admit and charge each attempt in one atomic script, so the budget is the same with one, two or
three processes. Redis here is a real redis-server with a password and TLS (verified against
a CA of the test's own); the proxies are real mitmdump processes; what reached the API server
is read from the emulator's request log. Redis killed mid-run: logins go on (counted in each
process, and the metrics and /readyz say so), and once it is back the processes share again,
including what they counted meanwhile.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from redis import Redis

import devpki
from tests.support.configs import htpasswd_add, write_yaml
from tests.support.harness import Emulator, Proxy, start_proxy_for
from tests.support.processes import free_port
from tests.support.redis_server import RedisServer
from tests.support.users import basic_header

PASSWORDS = {f"user{i}": f"user{i}-Passw0rd" for i in range(6)}
GET = ("GET", "/api/v1/namespaces/default/pods")
BUDGET = 10  # per_user_and_address, the default
State = dict[str, object]


def users(workdir: Path) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    for user, password in PASSWORDS.items():
        htpasswd_add(workdir / "htpasswd", user, password, "apr1")
    write_yaml(workdir / "users.yaml", {"users": {}})
    return workdir


def start_proxies(
    pki: Path, workdir: Path, emulator: Emulator, count: int, state: dict[str, object]
) -> list[Proxy]:
    proxies = []
    for i in range(count):
        d = workdir / f"proxy-{i}"
        d.mkdir(parents=True, exist_ok=True)
        for name in ("htpasswd", "users.yaml"):
            (d / name).write_bytes((workdir / name).read_bytes())
        metrics = {"listen": f"127.0.0.1:{free_port()}"}
        proxies.append(start_proxy_for(pki, d, emulator.port, state=state, metrics=metrics))
    return proxies


def send(proxy: Proxy, user: str, password: str, source: str) -> int:
    return proxy.raw(*GET, [basic_header(user, password)], source=source)[0]


def users_reached(emulator: Emulator, before: int) -> list[str]:
    """The users of the requests the API server got since `before` (the proxy's own start-up
    check of the cluster's trust settings left out)."""
    names = [r["authentication"]["user"]["username"] for r in emulator.requests()[before:]]
    return [name for name in names if not name.startswith("system:kube-front-proxy:")]


def evalsha_calls(redis: Redis) -> int:
    """Scripts Redis ran: one per admission (authn/redis_counters.py)."""
    stats: dict[str, int] = redis.info("commandstats").get("cmdstat_evalsha", {"calls": 0})
    return stats["calls"]


def get(proxy: Proxy, path: str) -> str:
    """A page of the proxy's metrics listener (/readyz, /metrics); always a 200 here."""
    listen: str = yaml.safe_load(proxy.config.read_text())["metrics"]["listen"]
    with urllib.request.urlopen(f"http://{listen}{path}", timeout=5) as response:
        assert response.status == 200
        return str(response.read().decode())


def readyz(proxy: Proxy) -> str:
    return get(proxy, "/readyz")


def metric(proxy: Proxy, name: str) -> float:
    for line in get(proxy, "/metrics").splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


@pytest.fixture(scope="module")
def tls_redis(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RedisServer, State]]:
    workdir = tmp_path_factory.mktemp("redis-tls")
    ca = devpki.make_ca("redis-ca")
    server_pair = devpki.issue(ca, "redis", dns_names=("localhost",), usages=("server",))
    (workdir / "password").write_text("redis-Passw0rd\n")
    server = RedisServer(
        workdir / "server", password="redis-Passw0rd", tls=server_pair.write(workdir, "redis")
    )
    state = {"redis": server.state(workdir / "password", ca=str(ca.write(workdir, "ca")[0]))}
    yield server, state
    server.stop()


@pytest.mark.parametrize("count", [1, 2, 3])
def test_wrong_passwords_spread_over_replicas_meet_one_budget(
    pki: Path,
    emulator: Emulator,
    tls_redis: tuple[RedisServer, State],
    tmp_path: Path,
    count: int,
) -> None:
    _, state = tls_redis
    proxies = start_proxies(pki, users(tmp_path), emulator, count, state)
    user, source = f"user{count}", f"127.0.7.{count}"
    try:
        before = len(emulator.requests())
        statuses = [send(proxies[i % count], user, f"guess-{i}", source) for i in range(BUDGET + 5)]
        assert statuses == [401] * BUDGET + [429] * 5
        # Locked at that address on every replica, the right password too (never checked).
        for proxy in proxies:
            assert send(proxy, user, PASSWORDS[user], source) == 429
        assert users_reached(emulator, before) == []
        # The user from another address, on every replica: fine.
        for proxy in proxies:
            assert send(proxy, user, PASSWORDS[user], "127.0.8.1") == 200
        for proxy in proxies:
            assert "[+]shared-state ok (rediss://localhost:" in readyz(proxy)
    finally:
        for proxy in proxies:
            proxy.process.stop()


def test_redis_killed_mid_run_then_restarted(pki: Path, emulator: Emulator, tmp_path: Path) -> None:
    (tmp_path / "password").write_text("redis-Passw0rd\n")
    server = RedisServer(tmp_path / "redis", password="redis-Passw0rd")
    state = {"redis": server.state(tmp_path / "password", timeout_seconds=0.2)}
    proxies = start_proxies(pki, users(tmp_path), emulator, 2, state)
    one, two = proxies
    try:
        # Remembered by both: further logins cost no Redis command; a wrong password, one.
        for proxy in proxies:
            assert send(proxy, "user0", PASSWORDS["user0"], "127.0.9.1") == 200
        redis = server.client()
        before = evalsha_calls(redis)
        for proxy in proxies:
            assert [send(proxy, "user0", PASSWORDS["user0"], "127.0.9.1") for _ in range(20)] == [
                200
            ] * 20
        assert evalsha_calls(redis) == before
        assert send(one, "user5", "wrong", "127.0.9.5") == 401
        assert evalsha_calls(redis) == before + 1
        # Then Redis dies.
        assert [send(one, "user1", f"g{i}", "127.0.9.2") for i in range(4)] == [401] * 4
        server.kill()
        # Logins go on: remembered ones, new ones, and wrong passwords are counted per
        # process: `one` saw 4 before and counts 6 more; `two` knows nothing of them.
        for proxy in proxies:
            assert send(proxy, "user0", PASSWORDS["user0"], "127.0.9.1") == 200
            assert send(proxy, "user2", PASSWORDS["user2"], "127.0.9.3") == 200
        statuses = [send(one, "user1", f"h{i}", "127.0.9.2") for i in range(7)]
        assert statuses == [401] * 6 + [429]
        assert send(two, "user1", "h-two", "127.0.9.2") == 401
        for proxy in proxies:
            assert "[-]shared-state degraded since" in readyz(proxy)
            assert metric(proxy, "kube_front_proxy_shared_state_degraded") == 1
            assert metric(proxy, "kube_front_proxy_shared_state_errors_total") >= 1
        assert "login failures are counted in this process" in one.process.output()
        assert f"lock-out counters shared through {server.url}" in one.process.output()
        # Back (empty: no persistence): each process pushes what it counted meanwhile, so the
        # pair `one` locked is locked on `two` as well.
        server.start()
        for proxy in proxies:
            proxy.process.wait_for("answers again after", timeout=10)
            assert "[+]shared-state ok" in readyz(proxy)
            assert metric(proxy, "kube_front_proxy_shared_state_degraded") == 0
        assert send(two, "user1", "after", "127.0.9.2") == 429
        assert send(one, "user3", "wrong", "127.0.9.4") == 401
        assert server.client().dbsize() > 0
    finally:
        for proxy in proxies:
            proxy.process.stop()
        server.stop()
    for proxy in proxies:
        assert "redis-Passw0rd" not in proxy.process.output()
