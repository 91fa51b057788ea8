"""HTTP/2 slow read: a client that reads nothing must not make the proxy hold the response.

A logged-in client opens its connection with SETTINGS_INITIAL_WINDOW_SIZE=0 and asks for a
chatty pod's log (320 MiB). mitmproxy queued whatever the upstream sent while the client's
window was closed (`BufferedH2Connection.send_data`) and acknowledged the upstream's HTTP/2 data
at once, so the whole response piled up in the proxy. Now the proxy takes from the upstream only
what it has handed on, up to a small window per stream and per connection, for an HTTP/2 and an
HTTP/1.1 upstream alike (`kube_front_proxy.seam.h2_flow_control`).

Asserted from the real processes: the proxy's resident memory while the client stalls, how much
of the log the emulator had written by the time the client opened its window (each line carries
the time it was made), and that the client then gets every byte, in order.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.emulator.api import CHATTY_LINE, CHATTY_LINE_BYTES
from tests.support.harness import Emulator, Proxy, start_emulator, start_proxy_for
from tests.support.measure import rss_mib
from tests.support.processes import running
from tests.support.users import basic_header, password_of

LOG_BYTES = 320 * 1024 * 1024
LOG_PATH = "/api/v1/namespaces/default/pods/nginx-1/log"
# What a stalled reader may cost the proxy, and what the upstream may have written meanwhile
# (its own buffers, the sockets', and the proxy's window).
MAX_GROWTH_MIB = 40
MAX_WRITTEN_MIB = 32
STALL_SECONDS = 3.0
AUTH = [("authorization", basic_header("alice", password_of("alice"))[1])]


@pytest.fixture(scope="module", params=["h2", "http/1.1"], ids=["h2-upstream", "h1-upstream"])
def chatty(
    request: pytest.FixtureRequest, pki: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Emulator, Proxy]]:
    """An emulator whose pods' logs go on for LOG_BYTES, and the proxy in front of it."""
    flags = ["--chatty-log-bytes", str(LOG_BYTES)]
    if request.param == "http/1.1":
        flags.append("--disable-http2")
    emulator = start_emulator(pki, tmp_path_factory.mktemp("emulator"), *flags)
    with running(emulator.process):
        proxy = start_proxy_for(pki, tmp_path_factory.mktemp("proxy"), emulator.port)
        with running(proxy.process):
            yield emulator, proxy


def _baseline(proxy: Proxy) -> float:
    """RSS after one request has been through every code path the attack uses."""
    client = proxy.h2("localhost")
    try:
        assert client.response(client.request("GET", "/version", AUTH)).status == 200
    finally:
        client.close()
    return rss_mib(proxy.process.proc.pid)


def _peak_growth(proxy: Proxy, before: float) -> float:
    """The largest RSS growth over STALL_SECONDS (cut short once it passes the bound)."""
    peak = 0.0
    deadline = time.monotonic() + STALL_SECONDS
    while time.monotonic() < deadline and peak <= MAX_GROWTH_MIB:
        peak = max(peak, rss_mib(proxy.process.proc.pid) - before)
        time.sleep(0.1)  # sampling over the stall, which is the scenario
    return peak


def test_a_stalled_stream_holds_the_upstream_back(chatty: tuple[Emulator, Proxy]) -> None:
    _, proxy = chatty
    before = _baseline(proxy)
    client = proxy.h2("localhost", initial_window=0)
    try:
        stream = client.request("GET", LOG_PATH, AUTH)
        response = client.responses[stream]
        client.wait(lambda: bool(response.headers))
        assert response.status == 200
        growth = _peak_growth(proxy, before)

        opened = time.time_ns()
        client.open_window(stream, 16 * 1024 * 1024)
        client.response(stream, timeout=300)
    finally:
        client.close()

    assert growth < MAX_GROWTH_MIB, f"RSS grew {growth:.0f} MiB while the client read nothing"
    lines = bytes(response.data).splitlines(keepends=True)
    assert lines[0].endswith(b" nginx-1 started\n") and lines[1].endswith(b" nginx-1 ready\n")
    chatty_lines = [CHATTY_LINE.fullmatch(line) for line in lines[2:]]
    assert all(chatty_lines), "a log line was cut or mangled"
    assert [int(m["seq"]) for m in chatty_lines if m] == list(range(len(chatty_lines)))
    assert len(chatty_lines) * CHATTY_LINE_BYTES == LOG_BYTES
    written = sum(1 for m in chatty_lines if m and int(m["sent"]) < opened) * CHATTY_LINE_BYTES
    assert written < MAX_WRITTEN_MIB * 2**20, (
        f"the upstream wrote {written / 2**20:.0f} MiB while the client read nothing"
    )


def test_many_stalled_streams_are_bounded_per_connection(
    chatty: tuple[Emulator, Proxy], request: pytest.FixtureRequest
) -> None:
    _, proxy = chatty
    # mitmproxy opens at most 5 connections to one address per client connection: over
    # HTTP/1.1 a sixth stream would wait for one of them.
    count = 24 if "h2-upstream" in request.node.callspec.id else 5
    before = _baseline(proxy)
    client = proxy.h2("localhost", initial_window=0)
    try:
        streams = [client.request("GET", LOG_PATH, AUTH) for _ in range(count)]
        client.wait(lambda: all(client.responses[s].headers for s in streams))
        growth = _peak_growth(proxy, before)
        for stream in streams:
            client.reset(stream)
        # The connection still serves a reader that reads.
        version = client.request("GET", "/version", AUTH)
        client.open_window(version, 1024 * 1024)
        assert client.response(version).status == 200
    finally:
        client.close()
    assert growth < MAX_GROWTH_MIB, f"RSS grew {growth:.0f} MiB for {count} stalled streams"
