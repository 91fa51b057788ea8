"""Audit flooding: a client without a login cannot write the audit log faster than a bound.

Each refused request used to write its whole request URI twice (RequestReceived and
ResponseComplete): 30 KB paths from one connection wrote ~690 KB/s and rotated the default
history (100 MB x 11) away in under half an hour. Now a refused request's URI is cut at 1 KB
like a user agent, and refused requests are audited up to audit.refused_per_address_per_minute
(60) per address and audit.refused_per_minute (600) in total; the rest are counted.
"""

from __future__ import annotations

import http.client
import json
import ssl
from pathlib import Path

from kube_front_proxy.authn.rate_budget import RateBudget
from tests.support.configs import read_json_lines
from tests.support.harness import Emulator, start_proxy_for
from tests.support.processes import free_port
from tests.support.users import basic_header, password_of

LONG_PATH = "/api/v1/namespaces/default/pods/" + "x" * 30_000
FLOOD = 300


def _flood(port: int, context: ssl.SSLContext, headers: dict[str, str]) -> list[int]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
    statuses = []
    try:
        for _ in range(FLOOD):
            conn.request("GET", LONG_PATH, headers=headers)
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
    finally:
        conn.close()
    return statuses


def test_refused_requests_write_a_bounded_audit(
    pki: Path, emulator: Emulator, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.log"
    metrics_port = free_port()
    proxy = start_proxy_for(pki, tmp_path, emulator.port, audit={"path": str(audit)},
                            metrics={"listen": f"127.0.0.1:{metrics_port}"})  # fmt: skip
    context = proxy.context()
    try:
        # No credentials at all: not a failed login (no lock-out), still refused.
        statuses = _flood(proxy.port, context, {"User-Agent": "u" * 4000})
        assert set(statuses) == {401}
        assert proxy.whoami("alice")["username"] == "alice"  # still audited, whole URI
        status, _, _ = proxy.raw("GET", LONG_PATH, [basic_header("alice", password_of("alice"))])
        assert status == 404  # forwarded: the emulator has no such pod
        metrics = http.client.HTTPConnection("127.0.0.1", metrics_port, timeout=10)
        metrics.request("GET", "/metrics")
        exposition = metrics.getresponse().read().decode()
    finally:
        proxy.process.stop()

    events = read_json_lines(audit)
    refused = [e for e in events if "kube-front-proxy/login-refused" in e.get("annotations", {})]
    requests = {e["auditID"] for e in refused}
    # The per-address burst (60), and the few that a minute refills while the flood runs.
    assert 50 <= len(requests) <= 70, len(requests)
    assert all(len(e["requestURI"].encode()) <= 1024 + len("...TRUNCATED") for e in refused)
    assert all(len(e["userAgent"].encode()) <= 1024 + len("...TRUNCATED") for e in refused)
    size = sum(len(json.dumps(e)) for e in refused)
    assert size < 70 * 2 * 3000, size  # under ~3 KB per stage, whatever the client sent
    unwritten = next(
        float(line.split()[-1]) for line in exposition.splitlines()
        if line.startswith("kube_front_proxy_audit_refused_unwritten_total")
    )  # fmt: skip
    assert unwritten == FLOOD - len(requests)
    mine = [e for e in events if e.get("user", {}).get("username") == "alice"]
    assert any(e["requestURI"] == LONG_PATH for e in mine)
    assert "audit events of refused requests not written" in proxy.process.output()


def test_refused_requests_can_be_left_out_of_the_audit(
    pki: Path, emulator: Emulator, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.log"
    proxy = start_proxy_for(pki, tmp_path, emulator.port,
                            audit={"path": str(audit), "refused_per_minute": 0})  # fmt: skip
    try:
        status, _, _ = proxy.raw("GET", "/api", [basic_header("mallory", "guess")])
        assert status == 401
        assert proxy.whoami("alice")["username"] == "alice"
    finally:
        proxy.process.stop()
    users = [e["user"].get("username") for e in read_json_lines(audit)]
    assert "mallory" not in users and "alice" in users


def test_budget_per_key_and_in_total() -> None:
    now = [0.0]
    budget = RateBudget(per_key=2, total=3, max_keys=2, clock=lambda: now[0])
    assert [budget.allow("a") for _ in range(3)] == [True, True, False]
    assert [budget.allow("b") for _ in range(2)] == [True, False]  # the total is spent
    assert budget.take_denied() == 2 and budget.denied == 0
    now[0] += 30  # half a minute refills one of each key's two and 1.5 of the total's three
    assert budget.allow("a") and not budget.allow("a")
    budget.allow("c")  # a third key: "b" is forgotten, the oldest
    assert list(budget._keys) == ["a", "c"]


def test_zero_allows_nothing() -> None:
    budget = RateBudget(per_key=0, total=600)
    assert not budget.allow("a")
