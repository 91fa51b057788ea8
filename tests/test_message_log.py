"""The per-session log allowance of upgraded sessions (sessions/message_log.py)."""

from __future__ import annotations

from kube_front_proxy.sessions.message_log import MessageLog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_session_logs_its_first_messages_then_counts_them() -> None:
    log = MessageLog(burst=3, interval=10, clock=Clock())
    assert [log.admit("a") for _ in range(5)] == [True, True, True, False, False]
    # Sessions have their own allowance.
    assert log.admit("b")
    assert log.end("a") == (2, 2)
    assert log.end("a") == (0, 0)


def test_a_summary_is_due_at_most_once_per_interval() -> None:
    clock = Clock()
    log = MessageLog(burst=1, interval=10, clock=clock)
    log.admit("a")
    for _ in range(1000):
        log.admit("a")
        assert log.due("a") == 0
    clock.now += 10
    assert log.due("a") == 1000
    assert log.due("a") == 0
    log.admit("a")
    clock.now += 5
    assert log.due("a") == 0
    assert log.end("a") == (1, 1001)


def test_forgotten_sessions_are_bounded() -> None:
    log = MessageLog(max_sessions=100)
    for i in range(1000):
        log.admit(str(i))
    assert len(log) == 100
    assert log.end("999") == (0, 0)
    assert len(log) == 99
