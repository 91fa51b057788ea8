"""Watches and followed logs are passed on as they arrive, not buffered until they end."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from mitmproxy.test import tutils

from kube_front_proxy.streaming import must_stream
from tests.support.api_paths import PODS
from tests.support.harness import Emulator, Proxy, start_proxy_for
from tests.support.processes import read_until
from tests.support.waiting import wait_until


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"content-length": "10"}, False),
        ({"Content-Length": "0"}, False),
        ({"transfer-encoding": "chunked"}, True),
        ({}, True),  # HTTP/2 DATA frames until the stream ends, or HTTP/1.0 until close
    ],
)
def test_must_stream(headers: dict[str, str], expected: bool) -> None:
    response = tutils.tresp(headers=tuple((k.encode(), v.encode()) for k, v in headers.items()))
    assert must_stream(response) is expected


@pytest.mark.parametrize(
    "args",
    [
        ("get", "--raw", "/api/v1/namespaces/default/pods?watch=true"),
        ("logs", "-f", "nginx-1"),
    ],
    ids=["watch", "logs-follow"],
)
def test_never_ending_responses_reach_kubectl_as_they_arrive(
    proxy: Proxy, args: tuple[str, ...]
) -> None:
    proc = proxy.kubectl_running(*args)
    try:
        needle = b'"name":"nginx-2"' if "--raw" in args else b"nginx-1 ready"
        read_until(proc, needle, timeout=10)
        # Still open: the API server has not ended the response, and neither has the proxy.
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_idle_timeout_is_the_configured_one(pki: Path, emulator: Emulator, tmp_path: Path) -> None:
    """A quiet watch lives as long as connections.idle_timeout_seconds, then is closed."""
    proxy = start_proxy_for(pki, tmp_path, emulator.port, connections={"idle_timeout_seconds": 2})
    try:
        proc = proxy.kubectl_running("get", "--raw", f"{PODS}?watch=true")
        try:
            read_until(proc, b'"name":"nginx-2"', timeout=10)
            started = time.monotonic()
            proc.wait(timeout=15)  # the proxy closes the quiet connection
            assert 1.5 < time.monotonic() - started < 10
        finally:
            proc.kill()
            proc.wait()
    finally:
        proxy.process.stop()


def test_a_client_that_goes_away_mid_watch_closes_the_upstream(
    proxy: Proxy, emulator: Emulator
) -> None:
    procs = [proxy.kubectl_running("get", "--raw", f"{PODS}?watch=true") for _ in range(5)]
    try:
        for proc in procs:
            read_until(proc, b'"name":"nginx-2"', timeout=10)
        assert proxy.upstream_connections(emulator.port) >= 5
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    wait_until(
        lambda: proxy.upstream_connections(emulator.port) == 0, 5,
        "the upstream connections stay open", interval=0.1,
    )  # fmt: skip
