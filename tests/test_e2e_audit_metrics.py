"""End to end: the audit log and the Prometheus metrics, with real kubectl through the proxy."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support.audit_schema import validate
from tests.support.configs import proxy_config, write_yaml
from tests.support.harness import start_emulator, start_proxy_for
from tests.support.processes import free_port
from tests.support.users import basic_header, password_of
from tests.support.waiting import wait_until

WRONG = "N0t-the-Passw0rd"


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_audit_log_and_metrics(pki: Path, tmp_path: Path) -> None:
    emulator = start_emulator(pki, tmp_path / "emulator")
    metrics_port = free_port()
    audit_path = tmp_path / "audit.log"
    proxy = start_proxy_for(
        pki, tmp_path / "proxy", emulator.port,
        audit={"path": str(audit_path)}, metrics={"listen": f"127.0.0.1:{metrics_port}"},
    )  # fmt: skip
    try:
        assert proxy.kubectl("get", "pods").returncode == 0
        assert proxy.whoami()["username"] == "alice"
        watch = proxy.kubectl(
            "get", "--raw", "/api/v1/namespaces/default/pods?watch=true&timeoutSeconds=1"
        )
        assert watch.returncode == 0, watch.stderr
        assert proxy.raw("GET", "/api/v1/pods", [basic_header("alice", WRONG)])[0] == 401
        exec_ws = proxy.kubectl("exec", "nginx-1", "--", "echo", "hi")
        assert exec_ws.returncode == 0 and exec_ws.stdout == "hi\n", exec_ws.stderr
        spdy = proxy.kubectl(
            "exec",
            "nginx-1",
            "--",
            "echo",
            "hi",
            env={"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"},
        )
        assert spdy.returncode == 0, spdy.stderr
        metrics = scrape(metrics_port)
    finally:
        proxy.process.stop()
        emulator.process.stop()

    events = [validate(line) for line in audit_path.read_text().splitlines()]
    by_verb = {(e["verb"], e["stage"]) for e in events}
    assert ("list", "ResponseComplete") in by_verb
    assert ("create", "ResponseComplete") in by_verb  # the SelfSubjectReview
    assert ("watch", "ResponseStarted") in by_verb and ("watch", "ResponseComplete") in by_verb
    watch_ids = [e["auditID"] for e in events if e["verb"] == "watch"]
    assert len(watch_ids) == 2 and len(set(watch_ids)) == 1

    # exec sessions: started, then complete, with the verb of their HTTP method.
    execs = [e for e in events if e.get("objectRef", {}).get("subresource") == "exec"]
    assert sorted((e["verb"], e["stage"]) for e in execs) == [
        ("create", "ResponseComplete"), ("create", "ResponseStarted"),
        ("get", "ResponseComplete"), ("get", "ResponseStarted"),
    ]  # fmt: skip
    assert all(e["responseStatus"]["code"] == 101 for e in execs)

    pods = next(e for e in events if e["verb"] == "list")
    assert pods["user"]["username"] == "alice"
    assert pods["objectRef"] == {"resource": "pods", "namespace": "default", "apiVersion": "v1"}
    assert pods["responseStatus"]["code"] == 200
    assert pods["annotations"]["kube-front-proxy/authenticator"] == "htpasswd"

    refused = [e for e in events if "kube-front-proxy/login-refused" in e.get("annotations", {})]
    assert len(refused) == 1
    assert refused[0]["user"]["username"] == "alice"
    assert refused[0]["responseStatus"]["code"] == 401
    assert refused[0]["annotations"]["kube-front-proxy/login-refused"] == "wrong password"

    # The API server was told the same audit ID: its log and ours join on it.
    forwarded = {v for r in emulator.requests() for n, v in r["headers"] if n.lower() == "audit-id"}
    assert {e["auditID"] for e in events if e["user"]["username"] == "alice"} - {
        refused[0]["auditID"]
    } <= forwarded
    text = audit_path.read_text()
    assert password_of("alice") not in text and WRONG not in text

    ok = (("authenticator", "htpasswd"), ("code", "200"), ("verb", "list"))
    assert metrics[("kube_front_proxy_requests_total", ok)] >= 1
    assert metrics[("kube_front_proxy_login_failures_total", (("reason", "wrong password"),))] == 1
    assert metrics[("kube_front_proxy_request_duration_seconds_count", (("verb", "list"),))] >= 1
    assert metrics[("kube_front_proxy_upstream_duration_seconds_count", ())] >= 3
    assert metrics[("kube_front_proxy_open_streams", ())] == 0


def test_bounded_stores_as_gauges(pki: Path, tmp_path: Path) -> None:
    """What the bounded stores hold, scraped: filled past their bounds, they stay at them, and a
    reload's new stores are the ones shown."""
    (tmp_path / "emulator").mkdir()
    emulator = start_emulator(pki, tmp_path / "emulator")
    metrics_port = free_port()
    settings: dict[str, Any] = {
        "metrics": {"listen": f"127.0.0.1:{metrics_port}"},
        "authn": {"cache": {"max_entries": 2}, "lockout": {"max_tracked": 2}},
        "connections": {"max_total": 50},
        "reload": {"interval_seconds": 1},
    }
    proxy = start_proxy_for(pki, tmp_path / "proxy", emulator.port, **settings)
    users = ["alice", "sha256-user", "sha512-user"]

    def held() -> dict[str, tuple[float, float | None]]:
        metrics = scrape(metrics_port)
        return {
            dict(labels)["store"]: (
                value,
                metrics.get(("kube_front_proxy_held_entries_max", labels)),
            )
            for (name, labels), value in metrics.items()
            if name == "kube_front_proxy_held_entries"
        }

    try:
        assert held()["credential_cache"] == (0, 2)
        for user in users:  # three failing (user, address) pairs and user names, bound 2
            assert proxy.raw("GET", "/api/v1/pods", [basic_header(user, WRONG)])[0] == 401
        now = held()
        assert now["lockout_per_user_and_address"] == (2, 2)
        assert now["lockout_per_user"] == (2, 2)
        assert now["lockout_per_address"] == (1, 2)
        for user in users:  # three remembered logins, bound 2
            ok = proxy.raw("GET", "/api/v1/pods", [basic_header(user, password_of(user))])
            assert ok[0] == 200
        now = held()
        assert now["credential_cache"] == (2, 2)
        assert now["lockout_per_user_and_address"] == (0, 2)  # a login clears its pair
        assert now["client_connections"][1] == 50
        assert now["lingering_close"] == (0, 256)
        assert now["session_message_log"] == (0, 10_000)
        assert now["session_recordings"] == (0, None)

        settings["authn"]["cache"]["max_entries"] = 3
        write_yaml(proxy.config, proxy_config(pki, emulator.port, proxy.port, **settings))
        wait_until(lambda: held()["credential_cache"] == (0, 3))  # a new cache: its figures
        assert held()["lockout_per_user"] == (2, 2)  # the same lock-out, kept
    finally:
        proxy.process.stop()
        emulator.process.stop()
