"""The emulator's HTTP/2 (tests/emulator/http2.py), spoken to directly with the `h2` library."""

from __future__ import annotations

import datetime
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from h2.errors import ErrorCodes

from tests.emulator import EmulatorServer, http2
from tests.emulator.api import API, CHATTY_LINE, FakePod
from tests.support.api_paths import PODS
from tests.support.emulator_pki import ALICE_HEADERS, front_proxy_context, kubeadm_config
from tests.support.http2 import H2Client
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def server(pki: Path) -> Iterator[EmulatorServer]:
    with EmulatorServer(kubeadm_config(pki)) as s:
        yield s


@pytest.fixture
def client(server: EmulatorServer, pki: Path) -> Iterator[H2Client]:
    c = H2Client(server.port, front_proxy_context(pki))
    yield c
    c.close()


def stream_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("emulator-h2-")]


@pytest.mark.parametrize(
    ("offered", "disable_http2", "selected"),
    [
        (["h2", "http/1.1"], False, "h2"),
        (["http/1.1", "h2"], False, "h2"),  # the server's order wins, as in Go's crypto/tls
        (["http/1.1"], False, "http/1.1"),
        (["h2", "http/1.1"], True, "http/1.1"),
    ],
)
def test_alpn_offers_h2_first_unless_disabled(
    pki: Path, offered: list[str], disable_http2: bool, selected: str
) -> None:
    with EmulatorServer(kubeadm_config(pki, disable_http2=disable_http2)) as server:
        context = front_proxy_context(pki)
        context.set_alpn_protocols(offered)
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            assert tls.selected_alpn_protocol() == selected


def test_a_stream_goes_through_front_proxy_authentication(
    server: EmulatorServer, client: H2Client
) -> None:
    before = len(server.records())
    body = b'{"kind":"SelfSubjectReview","apiVersion":"authentication.k8s.io/v1"}'
    sent = [("content-type", "application/json"), *ALICE_HEADERS, ("x-remote-group", "devs")]
    stream = client.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", sent, body)
    response = client.response(stream)
    assert response.status == 201
    assert json.loads(response.data)["status"]["userInfo"] == {
        "username": "alice",
        "groups": ["system:masters", "devs", "devs", "system:authenticated"],
        "extra": {"scopes": ["view"]},
    }
    # Lowercase names, sorted, then date; a short body has its length.
    names = [n for n, _ in response.headers]
    assert names == [":status", "audit-id", "cache-control", "content-type", "date",
                     "content-length"]  # fmt: skip
    assert response.header("content-length") == str(len(response.data))
    [record] = server.records()[before:]
    assert (record["alpn"], record["http_version"], record["method"]) == ("h2", "HTTP/2.0", "POST")
    # As received: no pseudo-headers, lowercase names, order and repeats kept.
    assert record["headers"] == [[n, v] for n, v in sent]
    assert record["body_length"] == len(body)
    assert record["peer_cert_cn"] == "front-proxy-client"
    assert record["authentication"]["authenticator"] == "requestheader"


def test_request_trailers_are_logged_and_not_identity(
    server: EmulatorServer, client: H2Client
) -> None:
    before = len(server.records())
    trailers = [("x-remote-user", "admin"), ("authorization", "Bearer t")]
    stream = client.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                            [("content-type", "application/json"), *ALICE_HEADERS], b"{}",
                            trailers=trailers)  # fmt: skip
    assert client.response(stream).status == 201
    [record] = server.records()[before:]
    assert record["trailers"] == [list(t) for t in trailers]
    user = record["authentication"]["user"]
    assert user is not None and user["username"] == "alice"


def test_many_concurrent_streams_share_one_connection(
    server: EmulatorServer, client: H2Client
) -> None:
    before = len(server.records())
    n = http2.MAX_CONCURRENT_STREAMS  # all the server allows at once
    streams = [client.request("GET", f"{PODS}/nginx-{1 + i % 2}", ALICE_HEADERS) for i in range(n)]
    responses = [client.response(s) for s in streams]
    assert [r.status for r in responses] == [200] * n
    names = [json.loads(r.data)["metadata"]["name"] for r in responses]
    assert names == [f"nginx-{1 + i % 2}" for i in range(n)]
    records = server.records()[before:]
    assert len(records) == n
    assert len({r["remote_addr"] for r in records}) == 1


def test_a_40_mb_list_streams_within_the_clients_flow_control_windows(pki: Path) -> None:
    # 65,535-byte windows on the client: the h2 client refuses (FlowControlError) any DATA
    # beyond them, so the whole body arriving proves the server waited for WINDOW_UPDATEs.
    pods = [
        FakePod("default", f"pod-{i:05d}", "nginx:1.27", datetime.timedelta(minutes=5))
        for i in range(30_000)
    ]
    with EmulatorServer(kubeadm_config(pki), api=API(pods=pods)) as server:
        client = H2Client(server.port, front_proxy_context(pki))
        try:
            response = client.response(client.request("GET", PODS, ALICE_HEADERS), timeout=60)
        finally:
            client.close()
    assert response.status == 200
    assert response.header("content-length") is None  # longer than Go's first 4 KiB
    assert len(response.data) > 40 * 1024 * 1024
    items = json.loads(response.data)["items"]
    assert [p["metadata"]["name"] for p in items] == [p.name for p in pods]


def test_a_chatty_log_is_made_as_the_client_reads_it(pki: Path) -> None:
    with EmulatorServer(kubeadm_config(pki, chatty_log_bytes=4 * 1024 * 1024)) as server:
        client = H2Client(server.port, front_proxy_context(pki), initial_window=0)
        try:
            stream = client.request("GET", f"{PODS}/nginx-1/log", ALICE_HEADERS)
            client.wait(lambda: bool(client.responses[stream].headers))
            opened = time.time_ns()
            client.open_window(stream, 1024 * 1024)
            response = client.response(stream)
        finally:
            client.close()
    lines = response.data.splitlines(keepends=True)
    assert lines[1].endswith(b" nginx-1 ready\n")
    chatty = [CHATTY_LINE.fullmatch(line) for line in lines[2:]]
    assert [int(m["seq"]) for m in chatty if m] == list(range(256))  # 4 MiB of 16 KiB lines
    # Made as the window allowed: at most the server's 1 MiB of queue before it opened.
    assert sum(1 for m in chatty if m and int(m["sent"]) < opened) <= 65


def test_watch_and_followed_logs_arrive_as_data_frames_until_the_client_resets(
    server: EmulatorServer, client: H2Client
) -> None:
    watch = client.request("GET", f"{PODS}?watch=true", ALICE_HEADERS)
    logs = client.request("GET", f"{PODS}/nginx-1/log?follow=true", ALICE_HEADERS)
    client.wait(lambda: client.responses[watch].data.count(b"\n") == 2, timeout=10)
    client.wait(lambda: client.responses[logs].data.endswith(b"nginx-1 ready\n"), timeout=10)
    events = [json.loads(line) for line in client.responses[watch].data.splitlines()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "nginx-1"),
        ("ADDED", "nginx-2"),
    ]
    assert client.responses[watch].header("content-type") == "application/json"
    # Both still open: their handlers hold them.
    assert not client.responses[watch].ended and not client.responses[logs].ended
    names = {f"emulator-h2-{client.sock.getsockname()[0]}:{client.sock.getsockname()[1]}-{s}"
             for s in (watch, logs)}  # fmt: skip
    assert names <= set(stream_threads())
    client.reset(watch)
    client.reset(logs)
    wait_until(lambda: not names & set(stream_threads()), 5, "the stream handlers live on")
    # The connection itself carries on.
    assert client.response(client.request("GET", "/version", ALICE_HEADERS)).status == 200


def test_a_watch_with_a_timeout_ends_its_stream(server: EmulatorServer, client: H2Client) -> None:
    response = client.response(
        client.request("GET", f"{PODS}?watch=true&timeoutSeconds=1", ALICE_HEADERS)
    )
    assert response.ended
    assert response.data.count(b'"type":"ADDED"') == 2


@pytest.mark.parametrize(
    "bad",
    [
        [("X-Remote-User", "alice")],  # uppercase name
        [("connection", "Upgrade"), ("upgrade", "websocket")],  # an upgrade attempt
        [("transfer-encoding", "chunked")],
        [("te", "gzip")],
    ],
    ids=["uppercase", "upgrade", "transfer-encoding", "te"],
)
def test_malformed_requests_are_stream_errors_like_go(
    server: EmulatorServer, client: H2Client, bad: list[tuple[str, str]]
) -> None:
    before = len(server.records())
    response = client.response(client.request("GET", "/version", bad, validate=False))
    assert response.reset == ErrorCodes.PROTOCOL_ERROR
    assert client.goaway is None
    assert server.records()[before:] == []
    assert client.response(client.request("GET", "/version", ALICE_HEADERS)).status == 200


def test_exec_over_h2_is_refused_as_not_an_upgrade(
    server: EmulatorServer, client: H2Client
) -> None:
    # kubectl never tries (client-go dials HTTP/1.1 for upgrades); without Connection and
    # Upgrade the subresource answers 400, as kube-apiserver does over HTTP/2.
    target = f"{PODS}/nginx-1/exec?command=true&stdout=true"
    response = client.response(
        client.request(
            "GET", target, [*ALICE_HEADERS, ("sec-websocket-protocol", "v5.channel.k8s.io")]
        )
    )
    assert response.status == 400
    body = json.loads(response.data)
    assert (body["reason"], body["message"]) == ("BadRequest", "Upgrade request required")
