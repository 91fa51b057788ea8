"""upstream/trust_gate.py: the proxy refuses every request until the cluster trust check passes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest

from kube_front_proxy.identity.headers import HeaderNames
from kube_front_proxy.upstream import trust_gate
from kube_front_proxy.upstream.pool import Address
from kube_front_proxy.upstream.trust_check import Verdict, could_not_run
from kube_front_proxy.upstream.trust_gate import (
    NOT_CHECKED,
    NOT_SERVING,
    TrustGate,
    check_until_passed,
)

READ = HeaderNames(group=("X-Remote-Group", "X-Group-2"))
PASSED = Verdict(server_names=READ, checked_on="10.0.0.1:6443")
MISMATCH = Verdict(problems=("cluster trust: identity.group_headers ...",), server_names=READ)


def messages(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    found = [(r.levelno, r.getMessage()) for r in caplog.records]
    caplog.clear()
    return found


def test_refused_until_a_verdict_passes_and_said_once_per_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "kube_front_proxy")
    gate = TrustGate()
    gate.wait_for_check()
    assert gate.refusal == NOT_CHECKED
    forbidden = could_not_run("403")
    gate.record(forbidden)
    assert gate.refusal == "the cluster trust check could not run: 403"
    assert messages(caplog) == [
        (logging.WARNING, "kube-front-proxy: the cluster trust check could not run: 403"),
        (logging.WARNING, NOT_SERVING),
    ]
    gate.record(forbidden)  # a retry that finds the same is quiet
    assert messages(caplog) == []
    gate.record(MISMATCH)
    assert gate.refusal == MISMATCH.problems[0] and gate.server_names == READ
    assert [level for level, _ in messages(caplog)] == [logging.WARNING, logging.WARNING]
    gate.record(PASSED)
    assert gate.refusal == ""
    assert messages(caplog)[-1] == (
        logging.WARNING,
        "kube-front-proxy: the cluster trust check passed: serving again",
    )


def test_the_check_is_repeated_until_it_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trust_gate, "RETRY_SECONDS", 0.01)
    verdicts = [could_not_run("unreachable"), MISMATCH, PASSED, MISMATCH]
    learned: list[HeaderNames] = []

    async def check(_servers: Sequence[Address]) -> Verdict:
        return verdicts.pop(0)

    gate = TrustGate()
    asyncio.run(check_until_passed(check, [("10.0.0.1", 6443)], gate, learned.append))
    assert gate.refusal == "" and verdicts == [MISMATCH]
    assert learned == [READ, READ]  # the names are stripped whatever the verdict
