"""The emulator's GOAWAY and graceful shutdown, as kube-apiserver 1.36 does them (see
tests/emulator/README.md), spoken to directly over HTTP/2 and HTTP/1.1."""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import time
from pathlib import Path

import pytest
from h2.errors import ErrorCodes

from tests.emulator import EmulatorConfig, EmulatorServer, http2
from tests.emulator.api import Request
from tests.support.api_paths import PODS, SSR
from tests.support.emulator_pki import ALICE_HEADERS, front_proxy_context, kubeadm_config
from tests.support.http1 import raw_request
from tests.support.http2 import H2Client


def connection_closed(client: H2Client, timeout: float) -> float:
    """Seconds until the server closed the connection."""
    start = time.monotonic()
    with pytest.raises(AssertionError, match="closed the connection"):
        client.wait(lambda: False, timeout)
    return time.monotonic() - start


def test_a_401_over_http2_comes_after_a_goaway_and_is_answered(pki: Path) -> None:
    with EmulatorServer(kubeadm_config(pki)) as server:
        client = H2Client(server.port, front_proxy_context(pki))
        try:
            first = client.request("GET", PODS, ALICE_HEADERS)
            assert client.response(first).status == 200
            refused = client.request("GET", PODS)  # a front-proxy certificate, but no user
            response = client.response(refused)
            assert (client.goaway, client.goaway_last_stream) == (ErrorCodes.NO_ERROR, refused)
            # Written ahead of the response that asked for it, as Go's write scheduler does.
            assert client.answered_before_goaway == [first]
            assert response.ended and response.status == 401
            assert json.loads(response.data)["reason"] == "Unauthorized"
            assert response.header("connection") is None
            closed_after = connection_closed(client, 5)
        finally:
            client.close()
    assert closed_after >= http2.GOAWAY_TIMEOUT * 0.8


def test_an_anonymous_http2_request_gets_goaway_too(pki: Path) -> None:
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    with EmulatorServer(kubeadm_config(pki)) as server:
        client = H2Client(server.port, context)
        try:
            stream = client.request("GET", "/version")
            response = client.response(stream)
        finally:
            client.close()
    assert (client.goaway, client.goaway_last_stream, client.answered_before_goaway) == (
        ErrorCodes.NO_ERROR,
        stream,
        [],
    )
    assert response.status == 200 and b'"gitVersion"' in response.data
    [record] = server.records()
    assert record["authentication"]["user"]["username"] == "system:anonymous"


def test_goaway_chance_answers_the_streams_it_took_and_ignores_later_ones(pki: Path) -> None:
    with EmulatorServer(kubeadm_config(pki, goaway_chance=0.02)) as server:
        client = H2Client(server.port, front_proxy_context(pki))
        try:
            streams: list[int] = []
            while client.goaway is None and len(streams) < 2000:
                streams.append(client.request("GET", PODS, ALICE_HEADERS))
                client.response(streams[-1])
            assert client.goaway == ErrorCodes.NO_ERROR, "no GOAWAY in 2000 requests at 2%"
            assert client.goaway_last_stream == streams[-1]
            late = client.request("GET", PODS, ALICE_HEADERS)  # above the last stream id: ignored
            assert client.response(streams[-1]).status == 200
            connection_closed(client, 5)
        finally:
            client.close()
    assert client.responses[late].headers == []
    assert len([r for r in server.records() if r["path"] == PODS]) == len(streams)


@pytest.mark.parametrize("chance", [-0.1, 0.03])
def test_goaway_chance_is_validated_as_kube_apiserver_does(pki: Path, chance: float) -> None:
    with pytest.raises(ValueError, match=r"can not be less than 0 or greater than 0\.02"):
        kubeadm_config(pki, goaway_chance=chance)


def test_idle_http2_connection_gets_goaway(pki: Path) -> None:
    with EmulatorServer(kubeadm_config(pki, idle_timeout=0.5)) as server:
        client = H2Client(server.port, front_proxy_context(pki))
        try:
            stream = client.request("GET", PODS, ALICE_HEADERS)
            assert client.response(stream).status == 200
            client.wait(lambda: client.goaway is not None, 5)
            assert (client.goaway, client.goaway_last_stream) == (ErrorCodes.NO_ERROR, stream)
        finally:
            client.close()


def test_idle_http11_connection_is_closed(pki: Path) -> None:
    context = front_proxy_context(pki)
    context.set_alpn_protocols(["http/1.1"])
    with EmulatorServer(kubeadm_config(pki, idle_timeout=0.5)) as server:
        conn = http.client.HTTPSConnection(server.host, server.port, context=context, timeout=10)
        try:
            conn.request("GET", PODS, headers=dict(ALICE_HEADERS[:2]))
            assert conn.getresponse().read()
            start = time.monotonic()
            assert conn.sock is not None
            assert conn.sock.recv(1) == b""  # the server closed it
            assert 0.4 < time.monotonic() - start < 3
        finally:
            conn.close()


def slow_server(pki: Path, **overrides: object) -> EmulatorServer:
    config: EmulatorConfig = kubeadm_config(pki, response_delay=0.5, **overrides)
    return EmulatorServer(config)


def test_graceful_shutdown_finishes_what_it_took_then_closes(pki: Path) -> None:
    server = slow_server(pki, request_timeout=5.0)
    server.start()
    client = H2Client(server.port, front_proxy_context(pki))
    try:
        in_flight = [client.request("GET", PODS, ALICE_HEADERS) for _ in range(3)]
        client.wait(lambda: len(server.records()) == 3, 5)
        stopper = threading.Thread(target=server.shutdown)
        stopper.start()
        client.wait(lambda: client.goaway is not None, 5)
        assert (client.goaway, client.goaway_last_stream) == (ErrorCodes.NO_ERROR, in_flight[-1])
        late = client.request("GET", PODS, ALICE_HEADERS)
        assert [client.response(s).status for s in in_flight] == [200, 200, 200]
        connection_closed(client, 5)
        stopper.join(10)
        assert not stopper.is_alive()
        assert client.responses[late].headers == []
        with pytest.raises(ConnectionRefusedError):
            raw_request(server.host, server.port, front_proxy_context(pki), "GET", "/readyz", [])
    finally:
        client.close()
        server.stop()


def test_graceful_shutdown_fails_readyz_first_and_closes_kept_connections_after_the_delay(
    pki: Path,
) -> None:
    server = EmulatorServer(kubeadm_config(pki, shutdown_delay_duration=1.0))
    server.start()
    context = front_proxy_context(pki)
    context.set_alpn_protocols(["http/1.1"])
    conn = http.client.HTTPSConnection(server.host, server.port, context=context, timeout=10)
    headers = dict(ALICE_HEADERS[:2])
    try:
        conn.request("GET", PODS, headers=headers)
        assert conn.getresponse().read()
        stopper = threading.Thread(target=server.shutdown)
        stopper.start()
        status, _, body = raw_request(
            server.host, server.port, context, "GET", "/readyz?verbose", ALICE_HEADERS[:2]
        )
        assert status == 500 and b"[-]shutdown failed" in body
        conn.request("GET", PODS, headers=headers)  # within the delay: served normally
        assert conn.getresponse().status == 200
        stopper.join(10)  # then Go's Shutdown closes idle keep-alive connections
        assert not stopper.is_alive()
        with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
            conn.request("GET", PODS, headers=headers)
            conn.getresponse()
    finally:
        conn.close()
        server.stop()


@pytest.mark.parametrize(
    ("target", "status"),
    [
        (PODS, 503),
        (SSR, 503),
        (f"{PODS}?watch=true", 403),  # long-running: on to authentication (anonymous here)
        ("/readyz", 500),  # exempt, and failing
        ("/livez", 200),
    ],
)
def test_requests_that_arrive_while_shutting_down_get_503_retry_after(
    pki: Path, target: str, status: int
) -> None:
    """WithWaitGroup once the server stopped accepting: what still reaches a handler gets
    503 with Retry-After, before authentication, except long-running and health requests."""
    server = EmulatorServer(kubeadm_config(pki))
    server.start()
    try:
        server._shutdown_initiated.set()
        server._not_accepting.set()
        method = "POST" if target == SSR else "GET"
        response = server.handle(Request(method, target, "HTTP/2.0", ALICE_HEADERS))
    finally:
        server.stop()
    assert response.status == status
    if status == 503:
        assert response.header("Retry-After") == "1"
        assert json.loads(response.body)["message"] == "apiserver is shutting down"
        assert server.records()[-1]["authentication"]["user"] is None
