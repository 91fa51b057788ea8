"""Several API servers: selection, ejection, the /readyz probe, hiding upstream addresses."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import http
from mitmproxy.test import tflow

from kube_front_proxy.config.errors import ConfigError
from kube_front_proxy.config.runtime import Runtime, build_runtime
from kube_front_proxy.upstream.pool import LEAST_OUTSTANDING, ROUND_ROBIN, ServerPool, check_forever
from kube_front_proxy.upstream.routing import MAX_RESENDS, Router, is_watch, may_retry
from tests.support.configs import htpasswd_add, proxy_config, write_yaml
from tests.support.emulator_pki import kubeadm_config
from tests.support.waiting import wait_until_async

from .emulator import EmulatorServer

A, B, C = ("10.0.0.1", 6443), ("10.0.0.2", 6443), ("10.0.0.3", 6443)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def picks(pool: ServerPool, n: int) -> list[tuple[str, int]]:
    out = []
    for _ in range(n):
        server = pool.acquire()
        assert server
        out.append(server.address)
    return out


def test_round_robin_takes_turns() -> None:
    pool = ServerPool([A, B, C], ROUND_ROBIN, 10)
    assert picks(pool, 7) == [A, B, C, A, B, C, A]


def test_least_outstanding_prefers_the_idle_server_and_rotates_ties() -> None:
    pool = ServerPool([A, B], LEAST_OUTSTANDING, 10)
    assert picks(pool, 2) == [A, B]  # a tie each time: turns
    pool.release(B)
    assert picks(pool, 1) == [B]  # A has 1 outstanding, B 0
    pool.release(A)
    pool.release(B)
    # A single client, one request at a time, still spreads over both.
    out = []
    for _ in range(4):
        server = pool.acquire()
        assert server
        out.append(server.address)
        pool.release(server.address)
    assert out == [A, B, A, B]


def test_round_robin_ignores_outstanding() -> None:
    pool = ServerPool([A, B], ROUND_ROBIN, 10)
    assert picks(pool, 4) == [A, B, A, B]
    assert [s.outstanding for s in pool.servers] == [2, 2]


def test_passive_ejection_doubles_and_ends_on_an_answer() -> None:
    clock = Clock()
    pool = ServerPool([A, B], ROUND_ROBIN, 10, clock)
    pool.connection_failed(A)
    assert picks(pool, 3) == [B, B, B]
    clock.now += 10
    assert picks(pool, 2) == [A, B]
    pool.connection_failed(A)  # second failure in a row: 20 s
    clock.now += 19.9
    assert picks(pool, 2) == [B, B]
    clock.now += 0.1
    assert picks(pool, 2) == [A, B]
    pool.answered(A)
    pool.connection_failed(A)  # the answer reset the count: 10 s again
    clock.now += 10
    assert picks(pool, 2) == [A, B]


def test_ejection_is_capped() -> None:
    clock = Clock()
    pool = ServerPool([A, B], ROUND_ROBIN, 1, clock)
    for _ in range(20):
        pool.connection_failed(A)
    clock.now += 31.9
    assert picks(pool, 2) == [B, B]
    clock.now += 0.1
    assert picks(pool, 2) == [A, B]


def test_a_lone_server_is_never_taken_out() -> None:
    # nginx: "If there is only a single server in a group, max_fails, fail_timeout and
    # slow_start parameters are ignored, and such a server will never be considered unavailable."
    pool = ServerPool([A], ROUND_ROBIN, 10, Clock())
    pool.connection_failed(A)
    pool.checked(A, ready=False)
    assert picks(pool, 2) == [A, A]
    assert pool.acquire(exclude=[A]) is None  # but a retry has nowhere to go


def test_eject_seconds_zero_never_ejects() -> None:
    pool = ServerPool([A, B], ROUND_ROBIN, 0)
    pool.connection_failed(A)
    assert picks(pool, 2) == [A, B]


def test_not_ready_servers_are_skipped_and_a_passed_check_ends_an_ejection() -> None:
    pool = ServerPool([A, B], LEAST_OUTSTANDING, 10)
    pool.checked(A, False)
    assert picks(pool, 2) == [B, B]
    pool.checked(B, False)
    assert pool.acquire() is None
    pool.checked(A, True)
    pool.connection_failed(A)
    pool.checked(A, True)
    assert picks(pool, 1) == [A]


def test_acquire_excludes_servers_already_tried() -> None:
    pool = ServerPool([A, B], ROUND_ROBIN, 10)
    assert [pool.acquire(exclude=[A]) for _ in range(2)] == [pool.servers[1]] * 2
    assert pool.acquire(exclude=[A, B]) is None


def test_checker_marks_servers_and_survives_a_probe_that_raises() -> None:
    pool = ServerPool([A, B, C], ROUND_ROBIN, 10)
    seen: list[tuple[str, int]] = []

    async def probe(address: tuple[str, int]) -> bool:
        seen.append(address)
        if address == C:
            raise RuntimeError("boom")
        return address == A

    async def run() -> None:
        task = asyncio.create_task(check_forever(pool, probe, 0.01))
        # A second round after C's probe raised: the checker survived it.
        await wait_until_async(lambda: seen.count(A) >= 2)
        task.cancel()

    asyncio.run(run())
    assert [s.ready for s in pool.servers] == [True, False, False]
    assert seen[:3] == [A, B, C] and len(seen) >= 6


def flow(method: str = "GET", path: str = "/api/v1/pods", **headers: str) -> http.HTTPFlow:
    f = tflow.tflow()
    f.request.method = method
    f.request.path = path
    f.request.headers["Host"] = "10.0.0.9:6443"  # as reverse mode sets it: the first server
    f.request.headers.update(headers)
    return f


def test_router_points_the_flow_at_the_server_and_answers_503_without_one() -> None:
    pool = ServerPool([A, B], ROUND_ROBIN, 10)
    router = Router(pool, retries=1)
    f = flow()
    router.route(f)
    assert (f.request.host, f.request.port, f.request.headers["host"]) == (*A, "10.0.0.1:6443")
    router.answered(f)
    assert pool.servers[0].outstanding == 0
    pool.checked(A, False)
    pool.checked(B, False)
    f = flow()
    router.route(f)
    assert f.response and f.response.status_code == 503
    assert f.response.content == (
        b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
        b'"message":"no Kubernetes API server is available","reason":"ServiceUnavailable",'
        b'"code":503}\n'
    )
    assert "10.0.0" not in f.response.text


def test_router_retries_once_on_another_server_and_ejects_the_failed_one() -> None:
    pool = ServerPool([A, B, C], ROUND_ROBIN, 10)
    router = Router(pool, retries=1)
    f = flow()
    router.route(f)
    assert router.retry_target(f) == B
    assert (f.request.host, f.request.port) == B
    assert [s.outstanding for s in pool.servers] == [0, 1, 0]
    assert router.retry_target(f) is None  # one retry only
    assert [s.failures for s in pool.servers] == [1, 1, 0]
    router.failed(f)
    assert [s.outstanding for s in pool.servers] == [0, 0, 0]


@pytest.mark.parametrize(
    ("method", "headers", "expected"),
    [
        ("GET", {}, True),
        ("HEAD", {}, True),
        ("POST", {}, False),
        ("PATCH", {}, False),
        ("PUT", {}, False),
        ("DELETE", {}, False),
        ("GET", {"Upgrade": "websocket", "Connection": "Upgrade"}, False),  # exec
    ],
)
def test_only_idempotent_requests_are_retried(
    method: str, headers: dict[str, str], expected: bool
) -> None:
    assert may_retry(flow(method, **headers).request) is expected


def test_router_does_not_retry_a_post() -> None:
    pool = ServerPool([A, B], ROUND_ROBIN, 10)
    router = Router(pool, retries=1)
    f = flow("POST")
    router.route(f)
    assert router.retry_target(f) is None
    assert (f.request.host, pool.servers[0].failures) == (A[0], 1)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/v1/namespaces/default/pods?watch=true", True),
        ("/api/v1/pods?watch=1&resourceVersion=5", True),
        ("/api/v1/watch/namespaces/default/pods", True),
        ("/api/v1/pods?watch=false", False),
        ("/api/v1/namespaces/default/pods/p/log?follow=true", False),
        ("/api/v1/pods", False),
    ],
)
def test_only_watches_end_cleanly(path: str, expected: bool) -> None:
    assert is_watch(flow("GET", path).request) is expected


# --- configuration -------------------------------------------------------------------------


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    htpasswd_add(tmp_path / "htpasswd", "alice", "pw", "apr1")
    return tmp_path


def load(config_dir: Path, pki: Path, **upstream: Any) -> Runtime:
    config = proxy_config(pki, 6443, 8443, upstream=upstream)
    config["authn"] = {"htpasswd": "htpasswd"}
    return build_runtime(write_yaml(config_dir / "config.yaml", config))


def test_defaults_for_several_servers(config_dir: Path, pki: Path) -> None:
    runtime = load(config_dir, pki, servers=["https://10.0.0.1:6443", "https://10.0.0.2"])
    up = runtime.settings.upstream
    assert [(s.host, s.port) for s in up.servers] == [A, ("10.0.0.2", 443)]
    assert (up.balance, up.eject_seconds, up.retries) == ("least_outstanding", 10, 1)
    assert (up.health_check.interval, up.health_check.timeout, up.health_check.path) == (
        5,
        2,
        "/readyz",
    )
    assert runtime.mode == "reverse:https://10.0.0.1:6443@127.0.0.1:8443"
    assert [s.address for s in runtime.router.pool.servers] == [A, ("10.0.0.2", 443)]
    assert runtime.health_probe is not None


def test_health_check_interval_zero_turns_the_probe_off(config_dir: Path, pki: Path) -> None:
    runtime = load(config_dir, pki, health_check={"interval_seconds": 0})
    assert runtime.health_probe is None


def test_reload_keeps_the_router_when_its_settings_did_not_change(
    config_dir: Path, pki: Path
) -> None:
    first = load(config_dir, pki)
    path = config_dir / "config.yaml"
    assert build_runtime(path, first).router is first.router
    second = load(config_dir, pki, retries=2)
    assert build_runtime(path, first).router is not first.router
    assert second.router.retries == 2


@pytest.mark.parametrize(
    ("upstream", "key", "message"),
    [
        ({"servers": ["https://a:1", "https://a:1"]}, "upstream.servers[1]", "listed twice"),
        ({"servers": ["https://a:1", "http://b:1"]}, "upstream.servers[1]", "https:// URL"),
        ({"servers": ["https://a:1", "https://b:1"], "server_name": None}, "upstream.server_name",
         "differ in host"),
        ({"balance": "random"}, "upstream.balance", "least_outstanding or round_robin"),
        ({"eject_seconds": -1}, "upstream.eject_seconds", "must be 0 or more"),
        ({"retries": -1}, "upstream.retries", "must be 0 or more"),
        ({"health_check": {"interval_seconds": -1}}, "upstream.health_check.interval_seconds",
         "must be 0 or more"),
        ({"health_check": {"timeout_seconds": 0}}, "upstream.health_check.timeout_seconds",
         "at least 1"),
        ({"health_check": {"path": "readyz"}}, "upstream.health_check.path", "absolute path"),
        ({"health_check": {"every": 1}}, "upstream.health_check.every", "unknown key"),
    ],
)  # fmt: skip
def test_upstream_errors_name_the_key(
    config_dir: Path, pki: Path, upstream: dict[str, Any], key: str, message: str
) -> None:
    with pytest.raises(ConfigError) as e:
        load(config_dir, pki, **upstream)
    assert e.value.key == key and message in e.value.message
    assert e.value.file == str(config_dir / "config.yaml")


# --- the /readyz probe, against the emulator over real mutual TLS ---------------------------


@pytest.fixture
def emulator_server(pki: Path, tmp_path: Path) -> Iterator[EmulatorServer]:
    config = kubeadm_config(
        pki, anonymous_auth=False, request_log=tmp_path / "requests.jsonl",
        not_ready_file=tmp_path / "not-ready",
    )  # fmt: skip
    with EmulatorServer(config) as server:
        yield server


def probe_of(config_dir: Path, pki: Path, port: int, **upstream: Any) -> bool:
    runtime = load(config_dir, pki, servers=[f"https://127.0.0.1:{port}"], **upstream)
    assert runtime.health_probe
    return asyncio.run(runtime.health_probe(("127.0.0.1", port)))


def test_probe_passes_with_the_proxy_certificate_and_anonymous_auth_off(
    config_dir: Path, pki: Path, emulator_server: EmulatorServer, tmp_path: Path
) -> None:
    port = int(emulator_server.url.rsplit(":", 1)[1])
    assert probe_of(config_dir, pki, port) is True
    record = emulator_server.records()[-1]
    assert (record["method"], record["path"]) == ("GET", "/readyz")
    assert ["X-Remote-User", "system:kube-front-proxy:health-check"] in record["headers"]


def test_probe_fails_when_not_ready_or_the_name_does_not_match(
    config_dir: Path, pki: Path, emulator_server: EmulatorServer, tmp_path: Path
) -> None:
    port = int(emulator_server.url.rsplit(":", 1)[1])
    (tmp_path / "not-ready").touch()
    assert probe_of(config_dir, pki, port) is False
    (tmp_path / "not-ready").unlink()
    assert probe_of(config_dir, pki, port, server_name="not-in-the-certificate") is False
    assert probe_of(config_dir, pki, port, health_check={"path": "/nope"}) is False


def test_probe_fails_on_a_closed_port(config_dir: Path, pki: Path) -> None:
    from tests.support.processes import free_port

    assert probe_of(config_dir, pki, free_port()) is False


def test_router_moves_a_post_that_was_never_sent() -> None:
    """The connection could not be opened (a restarting server's closed listener): the request
    never left the proxy, so even a POST goes to another server."""
    pool = ServerPool([A, B], ROUND_ROBIN, 10)
    router = Router(pool, retries=1)
    f = flow("POST")
    router.route(f)
    assert router.retry_target(f, unsent=True) == B
    assert (f.request.host, pool.servers[0].failures) == (B[0], 1)


def test_resend_after_goaway_prefers_another_server_and_ejects_none() -> None:
    pool = ServerPool([A, B], ROUND_ROBIN, 10)
    router = Router(pool, retries=0)
    f = flow("POST")
    router.route(f)
    assert router.resend_target(f) == B
    assert router.resend_target(f) == A
    assert [s.failures for s in pool.servers] == [0, 0]
    assert [s.outstanding for s in pool.servers] == [1, 0]


def test_resend_after_goaway_to_a_lone_server_goes_to_it_a_bounded_number_of_times() -> None:
    pool = ServerPool([A], ROUND_ROBIN, 10)
    router = Router(pool, retries=0)
    f = flow("DELETE")
    router.route(f)
    assert [router.resend_target(f) for _ in range(MAX_RESENDS)] == [A] * MAX_RESENDS
    assert router.resend_target(f) is None
    router.failed(f)
    assert pool.servers[0].outstanding == 0
