"""Audit events: the audit.k8s.io/v1 schema (tests/support/audit_schema.py) checked against
kube-apiserver's own lines, the stages of a request, the rotating writer."""

from __future__ import annotations

import json
import logging
import re
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kube_front_proxy.authn.credentials import parse_basic
from kube_front_proxy.identity.headers import Identity
from kube_front_proxy.observe.audit import (
    AUTHENTICATOR_ANNOTATION,
    LOGIN_REFUSED_ANNOTATION,
    AuditEvent,
    AuditLog,
    Stage,
    micro_time,
)
from kube_front_proxy.status import status_body
from tests.support.audit_schema import validate

# Lines as kube-apiserver writes them (--audit-log-format=json), to check the checker.
KUBE_APISERVER_LINES = [
    '{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"6c3b62fc-41e7-'
    '4f74-b8aa-82e943039013","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default'
    '/pods?fieldManager=kubectl-run","verb":"create","user":{"username":"minikube-user","groups":'
    '["system:masters","system:authenticated"]},"sourceIPs":["192.168.64.1"],"userAgent":"kubectl'
    '/v1.23.5 (darwin/amd64) kubernetes/c285e78","objectRef":{"resource":"pods","namespace":'
    '"default","name":"nginx","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},'
    '"requestReceivedTimestamp":"2022-05-18T15:48:37.388237Z","stageTimestamp":"2022-05-18T15:48:'
    '37.395604Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/'
    'reason":""}}',
    '{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"bf7f0c74-55bf-'
    '4527-8e87-0072aa177bca","stage":"ResponseComplete","requestURI":"/apis/storage.k8s.io/v1/'
    'storageclasses?allowWatchBookmarks=true\\u0026watch=true","verb":"watch","user":{"username":'
    '"system:apiserver","uid":"a15b8ac3-1da8-468a-accf-b28632533756","groups":["system:masters"]},'
    '"sourceIPs":["::1"],"userAgent":"kube-apiserver/v1.22.2 (linux/amd64) kubernetes/8b5a191",'
    '"objectRef":{"resource":"storageclasses","apiGroup":"storage.k8s.io","apiVersion":"v1"},'
    '"responseStatus":{"metadata":{},"status":"Success","message":"Connection closed early",'
    '"code":200},"requestReceivedTimestamp":"2021-12-15T08:34:41.094861Z","stageTimestamp":'
    '"2021-12-15T08:36:46.355361Z"}',
]


@pytest.mark.parametrize("line", KUBE_APISERVER_LINES)
def test_the_schema_accepts_kube_apiserver_lines(line: str) -> None:
    validate(line)


@pytest.mark.parametrize(
    "line",
    [
        KUBE_APISERVER_LINES[0].replace('"code":201', '"code":"201"'),  # no coercion
        KUBE_APISERVER_LINES[0].replace('"level"', '"lvl"'),  # unknown field
        KUBE_APISERVER_LINES[0].replace('"namespace"', '"ns"'),  # in objectRef
        KUBE_APISERVER_LINES[0].replace('"username"', '"user"'),  # in V1UserInfo
        KUBE_APISERVER_LINES[0].replace(".388237Z", "Z"),  # MicroTime has six digits
        KUBE_APISERVER_LINES[0].replace('"stage":"ResponseComplete",', ""),  # required
    ],
)
def test_the_schema_rejects_what_the_api_server_would_not_write(line: str) -> None:
    with pytest.raises(ValueError):
        validate(line)


ALICE = Identity(
    user="alice",
    groups=("developers", "system:masters"),
    uid="1001",
    extra={"scopes": ("view", "edit"), "acme.com/project": ("payments",)},
)
T0 = 1_700_000_000.25  # 2023-11-14T22:13:20.250000Z


def request(target: str, method: str = "GET", user: Identity | str | None = ALICE) -> AuditEvent:
    return AuditEvent.for_request(
        method, target, "10.0.0.7", "kubectl/v1.33.0 (linux/amd64)", user, "htpasswd", T0
    )


def test_a_resource_request_from_arrival_to_end() -> None:
    received = request("/api/v1/namespaces/default/pods/web-0?timeout=32s")
    done = received.complete(200, T0 + 0.0125)
    first, last = validate(received.to_json()), validate(done.to_json())
    assert first == {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": received.audit_id,
        "stage": "RequestReceived",
        "requestURI": "/api/v1/namespaces/default/pods/web-0?timeout=32s",
        "verb": "get",
        "user": {
            "username": "alice",
            "uid": "1001",
            "groups": ["developers", "system:masters"],
            "extra": {"scopes": ["view", "edit"], "acme.com/project": ["payments"]},
        },
        "sourceIPs": ["10.0.0.7"],
        "userAgent": "kubectl/v1.33.0 (linux/amd64)",
        "objectRef": {
            "resource": "pods",
            "namespace": "default",
            "name": "web-0",
            "apiVersion": "v1",
        },
        "requestReceivedTimestamp": "2023-11-14T22:13:20.250000Z",
        "stageTimestamp": "2023-11-14T22:13:20.250000Z",
        "annotations": {AUTHENTICATOR_ANNOTATION: "htpasswd"},
    }
    assert last["auditID"] == first["auditID"]
    assert last["stage"] == "ResponseComplete"
    assert last["responseStatus"] == {"metadata": {}, "code": 200}
    assert last["stageTimestamp"] == "2023-11-14T22:13:20.262500Z"
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
                        received.audit_id)  # fmt: skip


def test_every_request_gets_its_own_audit_id() -> None:
    assert request("/api").audit_id != request("/api").audit_id


@pytest.mark.parametrize(
    ("method", "target", "verb", "object_ref"),
    [
        ("GET", "/apis/apps/v1/namespaces/ns/deployments?watch=1", "watch",
         {"resource": "deployments", "namespace": "ns", "apiGroup": "apps", "apiVersion": "v1"}),
        ("DELETE", "/api/v1/namespaces/ns/pods", "deletecollection",
         {"resource": "pods", "namespace": "ns", "apiVersion": "v1"}),
        ("POST", "/api/v1/namespaces/ns/pods/p/exec?command=sh", "create",
         {"resource": "pods", "namespace": "ns", "name": "p", "apiVersion": "v1",
          "subresource": "exec"}),
        ("GET", "/api/v1/nodes?fieldSelector=metadata.name%3Dn1", "list",
         {"resource": "nodes", "name": "n1", "apiVersion": "v1"}),
        ("GET", "/version", "get", None),
        ("POST", "/apis", "post", None),
        # The API server answers this 500; the proxy still records what it knows.
        ("GET", "/api/v1/watch", "get", {"apiVersion": "v1"}),
    ],
)  # fmt: skip
def test_verb_and_object_reference(
    method: str, target: str, verb: str, object_ref: dict[str, str] | None
) -> None:
    event = validate(request(target, method).complete(200, T0).to_json())
    assert event["verb"] == verb
    assert event.get("objectRef") == object_ref


@pytest.mark.parametrize(
    ("claimed", "reason", "user"),
    [("mallory", "wrong password", {"username": "mallory"}), (None, "no credentials", {})],
)
def test_a_refused_login(claimed: str | None, reason: str, user: dict[str, str]) -> None:
    event = AuditEvent.for_request(
        "GET", "/api/v1/pods?watch=true", "10.0.0.9", "curl/8", claimed, "htpasswd", T0,
        refused=reason,
    )  # fmt: skip
    assert not event.long_running  # the proxy answers it at once
    body = status_body(401, "Unauthorized")
    line = validate(event.complete(401, T0 + 0.001, body=body).to_json())
    assert line["user"] == user
    assert line["verb"] == "watch"
    assert line["responseStatus"] == {
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    }
    assert line["annotations"] == {
        AUTHENTICATOR_ANNOTATION: "htpasswd",
        LOGIN_REFUSED_ANNOTATION: reason,
    }


def test_a_locked_out_login_keeps_retry_after() -> None:
    body = status_body(429, "too many failed logins", details={"retryAfterSeconds": 8})
    event = AuditEvent.for_request(
        "GET", "/api", "10.0.0.9", "", "alice", "htpasswd", T0, refused="locked out"
    )
    line = validate(event.complete(429, T0, body=body).to_json())
    assert line["responseStatus"] == {
        "metadata": {},
        "status": "Failure",
        "message": "too many failed logins",
        "reason": "TooManyRequests",
        "details": {"retryAfterSeconds": 8},
        "code": 429,
    }
    assert "userAgent" not in line


def test_a_status_from_the_api_server_is_copied_without_unknown_fields() -> None:
    body = json.dumps({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'pods "x" is forbidden: User "bob" cannot get resource "pods"',
        "reason": "Forbidden",
        "details": {"name": "x", "kind": "pods", "causes": [{"reason": "r", "bogus": 1}],
                    "bogus": {}},
        "code": 403,
    }).encode()  # fmt: skip
    line = validate(request("/api/v1/namespaces/ns/pods/x").complete(403, T0, body=body).to_json())
    assert line["responseStatus"] == {
        "metadata": {},
        "status": "Failure",
        "message": 'pods "x" is forbidden: User "bob" cannot get resource "pods"',
        "reason": "Forbidden",
        "details": {"name": "x", "kind": "pods", "causes": [{"reason": "r"}]},
        "code": 403,
    }


@pytest.mark.parametrize(
    "body",
    [
        b'{"kind":"Pod","apiVersion":"v1","metadata":{}}',
        b"<html>Bad Gateway</html>",
        b'{"kind":"Status"',
        b"[" * 100_000,
        b'{"kind":"Status","message":"' + b"x" * 70_000 + b'"}',
        b'{"kind":"Status","message":"\xff"}',
        b"",
        None,
    ],
)
def test_other_bodies_leave_just_the_code(body: bytes | None) -> None:
    line = validate(request("/api/v1/pods").complete(502, T0, body=body).to_json())
    assert line["responseStatus"] == {"metadata": {}, "code": 502}


def test_a_broken_stream_says_why() -> None:
    event = request("/api/v1/pods?watch=true")
    line = validate(event.complete(200, T0, message="client disconnected").to_json())
    assert line["responseStatus"] == {
        "metadata": {},
        "status": "Success",
        "message": "client disconnected",
        "code": 200,
    }
    line = validate(event.complete(502, T0, reason="BadGateway", message="refused").to_json())
    assert line["responseStatus"] == {
        "metadata": {},
        "status": "Failure",
        "message": "refused",
        "reason": "BadGateway",
        "code": 502,
    }


def test_a_proxy_failure_is_a_panic_event() -> None:
    line = validate(request("/api/v1/pods", user=None).panic("internal error", T0).to_json())
    assert line["stage"] == "Panic"
    assert line["user"] == {}
    assert line["responseStatus"] == {
        "metadata": {},
        "status": "Failure",
        "message": "internal error",
        "reason": "InternalError",
        "code": 500,
    }


@pytest.mark.parametrize(
    ("target", "method", "long_running"),
    [
        ("/api/v1/pods?watch=true", "GET", True),
        ("/api/v1/namespaces/ns/pods/p/exec?command=sh", "GET", True),  # WebSocket
        ("/api/v1/namespaces/ns/pods/p/exec?command=sh", "POST", True),  # SPDY
        ("/api/v1/namespaces/ns/pods/p/attach", "POST", True),
        ("/api/v1/namespaces/ns/pods/p/portforward", "GET", True),
        ("/api/v1/namespaces/ns/pods/p/log?follow=true", "GET", True),
        ("/api/v1/namespaces/ns/services/s:80/proxy/", "GET", True),
        ("/api/v1/pods", "GET", False),
        ("/api/v1/namespaces/ns/pods/p", "DELETE", False),
    ],
)
def test_long_running_requests(target: str, method: str, long_running: bool) -> None:
    assert request(target, method).long_running is long_running


def test_a_long_running_request_writes_two_events_with_one_audit_id(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    event = request("/api/v1/namespaces/ns/pods?watch=true")
    log.write(event)  # RequestReceived: omitted by default, as most audit policies do
    log.write(event.started(200, T0 + 0.01))
    log.write(event.complete(200, T0 + 300))
    log.close()
    lines = [validate(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert [line["stage"] for line in lines] == ["ResponseStarted", "ResponseComplete"]
    assert {line["auditID"] for line in lines} == {event.audit_id}
    assert [line["responseStatus"] for line in lines] == [{"metadata": {}, "code": 200}] * 2
    assert lines[1]["stageTimestamp"] == "2023-11-14T22:18:20.250000Z"


def test_omit_stages_can_keep_request_received(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log", omit_stages=())
    event = request("/api")
    log.write(event)
    log.write(event.complete(200, T0))
    log.close()
    lines = (tmp_path / "audit.log").read_text().splitlines()
    assert [json.loads(line)["stage"] for line in lines] == ["RequestReceived", "ResponseComplete"]


def test_the_log_rotates_by_size_and_keeps_a_bounded_number_of_backups(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    line_size = len(request("/api").complete(200, T0).to_json()) + 1
    log = AuditLog(path, max_bytes=3 * line_size, backups=2)
    ids = []
    for _ in range(20):
        event = request("/api").complete(200, T0)
        ids.append(event.audit_id)
        log.write(event)
    log.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.log", "audit.log.1", "audit.log.2"]
    kept = []
    for name in ("audit.log.2", "audit.log.1", "audit.log"):
        data = (tmp_path / name).read_bytes()
        assert len(data) <= 3 * line_size
        kept += [validate(line)["auditID"] for line in data.decode().splitlines()]
    assert kept == ids[-len(kept) :]  # oldest to newest, nothing reordered
    assert len(kept) == 3 + 3 + 2  # two full backups, and the last 20 % 3 events
    assert path.stat().st_mode & 0o777 == 0o600


def test_an_event_bigger_than_max_bytes_gets_a_file_of_its_own(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log", max_bytes=10, backups=1)
    first, second = request("/api").complete(200, T0), request("/apis").complete(200, T0)
    log.write(first)
    log.write(second)
    log.close()
    assert validate((tmp_path / "audit.log.1").read_text())["auditID"] == first.audit_id
    assert validate((tmp_path / "audit.log").read_text())["auditID"] == second.audit_id


def test_rotation_needs_a_backup() -> None:
    with pytest.raises(ValueError, match="backup"):
        AuditLog(Path("audit.log"), max_bytes=1000, backups=0)


def test_concurrent_writers_lose_and_tear_nothing(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log", max_bytes=20_000, backups=100)

    def write(n: int) -> None:
        for i in range(200):
            log.write(request(f"/api/v1/namespaces/ns{n}/pods/p{i}").complete(200, T0))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    lines = [line for p in tmp_path.iterdir() for line in p.read_text().splitlines()]
    assert len(lines) == 8 * 200
    assert len({json.loads(line)["auditID"] for line in lines}) == 8 * 200


def test_an_unwritable_log_never_raises_and_is_reported_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "missing-dir" / "audit.log"
    log = AuditLog(path)
    with caplog.at_level(logging.WARNING, logger="kube_front_proxy"):
        for _ in range(3):
            log.write(request("/api").complete(200, T0))
        assert [r.levelno for r in caplog.records] == [logging.ERROR]
        assert str(path) in caplog.records[0].getMessage()
        path.parent.mkdir()
        log.write(request("/api").complete(200, T0))
        assert "3 events were lost" in caplog.records[-1].getMessage()
    log.close()
    assert len(path.read_text().splitlines()) == 1


def test_a_directory_as_log_path_never_raises(tmp_path: Path) -> None:
    log = AuditLog(tmp_path)
    log.write(request("/api").complete(200, T0))
    log.close()


def test_no_secret_reaches_the_log(tmp_path: Path) -> None:
    # The addon passes the claimed name of a Basic login; the password has no way in.
    authorization = "Basic " + "bWFsbG9yeTpodW50ZXIy"  # mallory:hunter2
    credentials = parse_basic([authorization])
    assert credentials is not None
    log = AuditLog(tmp_path / "audit.log")
    event = AuditEvent.for_request(
        "GET", "/api", "10.0.0.9", "curl/8", credentials.username, "htpasswd", T0,
        refused="wrong password",
    )  # fmt: skip
    log.write(event.complete(401, T0, body=status_body(401, "Unauthorized")))
    log.close()
    text = (tmp_path / "audit.log").read_text()
    assert "mallory" in text
    assert "hunter2" not in text
    assert "bWFsbG9yeTpodW50ZXIy" not in text


def test_bytes_that_are_not_utf8_become_replacement_characters() -> None:
    # mitmproxy hands undecodable header bytes over as surrogate escapes.
    user_agent = b"agent-\xff".decode("utf-8", "surrogateescape")
    target = b"/api/v1/namespaces/\xe9/pods".decode("utf-8", "surrogateescape")
    event = AuditEvent.for_request("GET", target, "10.0.0.7", user_agent, ALICE, "htpasswd", T0)
    line = validate(event.to_json())
    assert line["userAgent"] == "agent-\ufffd"
    assert line["requestURI"] == "/api/v1/namespaces/\ufffd/pods"
    event.to_json().encode("utf-8")  # strict: no lone surrogate left


def test_a_long_user_agent_is_truncated_like_the_api_servers() -> None:
    event = AuditEvent.for_request("GET", "/api", "10.0.0.7", "a" * 2000, ALICE, "htpasswd", T0)
    assert event.user_agent == "a" * 1024 + "...TRUNCATED"


@pytest.mark.parametrize(
    ("address", "expected"),
    [("::ffff:192.0.2.1", "192.0.2.1"), ("2001:db8::1", "2001:db8::1"), ("10.1.2.3", "10.1.2.3")],
)
def test_source_ips_are_written_as_go_writes_them(address: str, expected: str) -> None:
    event = AuditEvent.for_request("GET", "/api", address, "", ALICE, "htpasswd", T0)
    assert event.source_ips == (expected,)


def test_micro_time_is_metav1_micro_time() -> None:
    assert micro_time(0) == "1970-01-01T00:00:00.000000Z"
    stamp = datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=UTC).timestamp()
    assert micro_time(stamp) == "2024-02-29T23:59:59.123456Z"


def test_stages_are_the_audit_v1_stages() -> None:
    assert [str(s) for s in Stage] == [
        "RequestReceived",
        "ResponseStarted",
        "ResponseComplete",
        "Panic",
    ]
