"""Fault: the API server answers slowly. Past upstream.response_timeout_seconds the client gets a
504 Status (as kube-apiserver's own --request-timeout gives), the upstream connection is closed,
and other clients are served meanwhile. Streams are exempt once their headers arrived.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.harness import Emulator, Proxy, start_emulator, start_proxy_for
from tests.support.http1 import read_response
from tests.support.users import basic_header, password_of
from tests.support.waiting import wait_until

GOOD = basic_header("alice", password_of("alice"))


@pytest.fixture(scope="module")
def slow_emulator(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    workdir = tmp_path_factory.mktemp("slow-emulator")
    with start_emulator(pki, workdir, "--response-delay-file", str(workdir / "delay")) as emu:
        yield emu


@pytest.fixture(scope="module")
def proxy(
    pki: Path, slow_emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    with start_proxy_for(
        pki, tmp_path_factory.mktemp("proxy"), slow_emulator.port,
        # No start-up trust check: its own request, slowed down too, would hold a connection.
        upstream={"response_timeout_seconds": 1, "health_check": {"interval_seconds": 0},
                  "check_cluster_trust": False},
    ) as p:  # fmt: skip
        yield p


def slow_down(emulator: Emulator, seconds: float | None) -> None:
    delay = emulator.request_log.parent / "delay"
    if seconds is None:
        delay.unlink(missing_ok=True)
    else:
        delay.write_text(str(seconds))


def wait_until_received(emulator: Emulator, path: str) -> None:
    wait_until(
        lambda: any(r["path"] == path for r in emulator.requests()), 5,
        f"{path} never reached the API server",
    )  # fmt: skip


def test_a_slow_api_server_gets_a_504_and_others_are_served(
    proxy: Proxy, slow_emulator: Emulator
) -> None:
    slow_down(slow_emulator, 5)
    answers: list[tuple[int, dict[str, str], bytes, float]] = []

    def slow_request() -> None:
        started = time.monotonic()
        status, headers, body = proxy.raw("GET", "/version?slow", [GOOD])
        answers.append((status, headers, body, time.monotonic() - started))

    slow = threading.Thread(target=slow_request)
    slow.start()
    wait_until_received(slow_emulator, "/version?slow")
    slow_down(slow_emulator, None)  # read per response: the slow one keeps its 5 s
    started = time.monotonic()
    assert proxy.raw("GET", "/version?meanwhile", [GOOD])[0] == 200
    assert time.monotonic() - started < 0.5
    slow.join(10)
    [(status, headers, body, elapsed)] = answers
    assert status == 504
    assert 1 <= elapsed < 2
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "the Kubernetes API server did not answer within 1 seconds",
        "reason": "Timeout", "code": 504,
    }  # fmt: skip
    # The connection that waited is closed; the emulator's own (still sleeping) side ends too.
    assert proxy.upstream_connections(slow_emulator.port) == 0
    assert proxy.raw("GET", "/version?after", [GOOD])[0] == 200


def test_the_client_connection_stays_usable_after_a_504(
    proxy: Proxy, slow_emulator: Emulator
) -> None:
    request = b"GET /version HTTP/1.1\r\nHost: x\r\n%s: %s\r\n\r\n" % (
        GOOD[0].encode(), GOOD[1].encode(),
    )  # fmt: skip
    with proxy.connect(timeout=10) as sock:
        slow_down(slow_emulator, 3)
        sock.sendall(request)
        first = read_response(sock)
        slow_down(slow_emulator, None)
        sock.sendall(request)
        second = read_response(sock)
    assert (first[0], first[2]["reason"]) == (504, "Timeout")
    assert second[0] == 200


def test_a_quiet_watch_is_not_cut(proxy: Proxy) -> None:
    """Its headers come at once; after them the timeout no longer applies."""
    started = time.monotonic()
    result = proxy.kubectl(
        "get", "--raw", "/api/v1/namespaces/default/pods?watch=true&timeoutSeconds=3"
    )
    assert result.returncode == 0, result.stderr
    assert 3 <= time.monotonic() - started < 6  # ended by the API server, not by the proxy
    assert "504" not in result.stdout + result.stderr
