"""Brute-force limits: per user and per client, exponential, bounded, reset by success."""

from __future__ import annotations

import base64
from pathlib import Path

from kube_front_proxy.lockout import Lockout, LockoutPolicy

from .e2e import basic_header, password_of, start_emulator, start_proxy_for


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


POLICY = LockoutPolicy(
    user_failures=3, client_failures=5, first_seconds=1, max_seconds=60, max_tracked=100
)


def fail(
    lockout: Lockout, times: int, user: str | None = "alice", client: str = "10.0.0.1"
) -> None:
    for _ in range(times):
        lockout.failed(user, client)


def test_user_is_locked_after_n_failures_with_exponential_backoff() -> None:
    clock = Clock()
    lockout = Lockout(POLICY, clock)
    fail(lockout, 2)
    assert lockout.retry_after("alice", "10.0.0.2") == 0
    fail(lockout, 1)
    assert lockout.retry_after("alice", "10.0.0.2") == 1  # from any address
    fail(lockout, 1)
    assert lockout.retry_after("alice", "10.0.0.2") == 2
    fail(lockout, 1)
    assert lockout.retry_after("alice", "10.0.0.2") == 4
    fail(lockout, 20)
    assert lockout.retry_after("alice", "10.0.0.2") == 60  # capped
    clock.now += 60
    assert lockout.retry_after("alice", "10.0.0.2") == 0


def test_a_locked_user_does_not_lock_other_users() -> None:
    lockout = Lockout(POLICY, Clock())
    fail(lockout, 3, client="10.0.0.1")
    assert lockout.retry_after("alice", "10.0.0.9") > 0
    assert lockout.retry_after("bob", "10.0.0.9") == 0


def test_a_client_is_locked_across_user_names() -> None:
    lockout = Lockout(POLICY, Clock())
    for i in range(5):
        lockout.failed(f"user{i}", "10.0.0.1")
    assert lockout.retry_after("someone-else", "10.0.0.1") == 1
    assert lockout.retry_after("someone-else", "10.0.0.2") == 0
    # Malformed credentials carry no user name: they count against the client only.
    lockout.failed(None, "10.0.0.3")
    assert len(lockout) == 5 + 1 + 1


def test_success_resets() -> None:
    lockout = Lockout(POLICY, Clock())
    fail(lockout, 2)
    lockout.succeeded("alice", "10.0.0.1")
    fail(lockout, 2)
    assert lockout.retry_after("alice", "10.0.0.1") == 0


def test_a_new_series_starts_after_a_quiet_period() -> None:
    clock = Clock()
    lockout = Lockout(POLICY, clock)
    fail(lockout, 2)
    clock.now += 61
    fail(lockout, 2)
    assert lockout.retry_after("alice", "10.0.0.1") == 0


def test_memory_is_bounded() -> None:
    lockout = Lockout(POLICY, Clock())
    for i in range(1000):
        lockout.failed(f"random-{i}", f"10.0.{i // 256}.{i % 256}")
    assert len(lockout) == POLICY.max_tracked


def test_lockout_end_to_end(pki: Path, tmp_path: Path) -> None:
    (tmp_path / "emulator").mkdir()
    emulator = start_emulator(pki, tmp_path / "emulator")
    proxy = start_proxy_for(
        pki, tmp_path / "proxy", emulator.port,
        authn={"lockout": {"user_failures": 3, "client_failures": 100, "first_seconds": 30}},
    )  # fmt: skip
    try:
        statuses = [
            proxy.raw("GET", "/api", [basic_header("bcrypt-user", "guess")])[0] for _ in range(3)
        ]
        assert statuses == [401, 401, 401]
        before = len(emulator.requests())
        # Locked: even the right password is refused, without running bcrypt.
        status, headers, body = proxy.raw(
            "GET", "/api", [basic_header("bcrypt-user", password_of("bcrypt-user"))]
        )
        assert status == 429
        assert headers["Retry-After"] == "30"
        assert b'"reason":"TooManyRequests"' in body and b'"retryAfterSeconds":30' in body
        assert len(emulator.requests()) == before
        # Other users are not locked out.
        assert proxy.whoami("alice")["username"] == "alice"
    finally:
        proxy.process.stop()
        emulator.process.stop()
    assert "locked out" in proxy.process.output()
    assert base64.b64encode(b"bcrypt-user:guess").decode() not in proxy.process.output()
