"""The audit helper: summaries of an audit log and of a saved flow file."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from mitmproxy import io
from mitmproxy.test import tflow

from kube_front_proxy.authn.login import Outcome
from kube_front_proxy.identity.headers import Identity
from kube_front_proxy.observe.audit import AuditEvent, AuditLog
from kube_front_proxy.observe.flow_labels import label
from kube_front_proxy.observe.summary import main

ALICE = Identity("alice", ("dev",))

EXPECTED = """requests per user:
         2  alice
         1  bob
requests per verb:
         2  list
         1  watch
refused logins per source:
         2  10.0.0.9
refused logins per claimed user:
         1  alice
         1  mallory"""


def test_summary_of_an_audit_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = AuditLog(tmp_path / "audit.log")
    requests = [
        ("GET", "/api/v1/pods", ALICE, None, "10.0.0.1"),
        ("GET", "/api/v1/namespaces/a/pods", ALICE, None, "10.0.0.1"),
        ("GET", "/api/v1/pods?watch=true", Identity("bob"), None, "10.0.0.2"),
        ("GET", "/api/v1/pods", "alice", "wrong password", "10.0.0.9"),
        ("GET", "/api/v1/pods", "mallory", "unknown user", "10.0.0.9"),
    ]
    for method, path, user, refused, source in requests:
        event = AuditEvent.for_request(method, path, source, "kubectl", user, "htpasswd", 1.0,
                                       refused=refused)  # fmt: skip
        if event.long_running:
            log.write(event.started(200, 2.0))
        log.write(event.complete(401 if refused else 200, 3.0))
    log.close()
    assert main([str(tmp_path / "audit.log")]) == 0
    assert capsys.readouterr().out.strip() == EXPECTED


def test_summary_of_a_flow_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flows = []
    for path, outcome, source in [
        ("/api/v1/pods", Outcome(ALICE, claimed_user="alice"), "10.0.0.1"),
        ("/api/v1/namespaces/a/pods", Outcome(ALICE, claimed_user="alice"), "10.0.0.1"),
        ("/api/v1/pods?watch=1", Outcome(Identity("bob"), claimed_user="bob"), "10.0.0.2"),
        ("/api/v1/pods", Outcome(None, reason="wrong password", claimed_user="alice"), "10.0.0.9"),
        ("/api/v1/pods", Outcome(None, reason="unknown user", claimed_user="mallory"), "10.0.0.9"),
    ]:
        flow = tflow.tflow(resp=True)
        flow.request.path = path
        flow.client_conn.peername = (source, 5000)
        label(flow, outcome)
        flows.append(flow)
    with (tmp_path / "flows.mitm").open("wb") as f:
        writer = io.FlowWriter(f)
        for flow in flows:
            writer.add(flow)
    assert main([str(tmp_path / "flows.mitm")]) == 0
    assert capsys.readouterr().out.strip() == EXPECTED


def test_unreadable_input_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.log"
    bad.write_bytes(base64.b64encode(b"not a flow file"))
    assert main([str(bad)]) == 1
    assert str(bad) in capsys.readouterr().err
