"""HTTP/2 rapid reset (CVE-2023-44487): a logged-in client opens streams and resets each at once.

Every reset stream frees its slot under SETTINGS_MAX_CONCURRENT_STREAMS, so the concurrency
limit bounds nothing: 500 HEADERS + RST_STREAM pairs became 500 requests at the API server,
and nothing stopped the client from going on. The oracle is the emulator's request log.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import pytest
from h2.errors import ErrorCodes

from kube_front_proxy.config.errors import ConfigError
from kube_front_proxy.config.settings import load_settings
from kube_front_proxy.seam.rapid_reset import ResetBudget
from tests.support.configs import proxy_config, write_yaml
from tests.support.harness import Emulator, Proxy, start_proxy_for
from tests.support.users import basic_header, password_of

BOUND = 100  # limits.http2_resets_per_minute, by default
AUTH = [(name.lower(), value) for name, value in [basic_header("alice", password_of("alice"))]]


def settled_count(emulator: Emulator, marker: str) -> int:
    """How many requests with the marker reached the API server, once no more arrive."""
    count, stable_since = -1, time.monotonic()
    while time.monotonic() - stable_since < 1:
        now = sum(marker in r["path"] for r in emulator.requests())
        if now != count:
            count, stable_since = now, time.monotonic()
        time.sleep(0.05)  # the quiet second is the scenario: nothing more arrives
    return count


def test_rapid_resets_are_bounded_then_the_connection_goes(
    proxy: Proxy, emulator: Emulator
) -> None:
    """All 500 pairs are written before anything is read, as a pipelining attacker does: the
    GOAWAY comes after about 100, and the pairs after it must not be met with a TCP reset,
    which would lose the GOAWAY (the proxy closed at once: no GOAWAY in 2 of 10 runs with a
    CPU hog alongside; it lingers now: seam/lingering_close.py)."""
    client = proxy.h2("localhost")
    try:
        for i in range(500):
            client.reset(client.request("GET", f"/api/v1/pods?rapid-{i}", AUTH))
        client.wait(lambda: client.goaway is not None, timeout=10)
    finally:
        client.close()
    reached = settled_count(emulator, "rapid-")
    print(f"{reached} reached the API server, GOAWAY {client.goaway}")
    assert client.goaway == ErrorCodes.ENHANCE_YOUR_CALM
    assert reached <= BOUND + 1
    assert "reset more than" in proxy.process.output()


def test_a_few_resets_keep_the_connection(proxy: Proxy, emulator: Emulator) -> None:
    """kubectl cancelling a few requests (Ctrl-C on a watch, a timeout) is not an attack."""
    client = proxy.h2("localhost")
    try:
        for i in range(20):
            client.reset(client.request("GET", f"/api/v1/pods?few-{i}", AUTH))
        response = client.response(client.request("GET", "/version", AUTH))
    finally:
        client.close()
    assert client.goaway is None
    assert response.status == 200


def test_a_request_and_its_reset_in_one_read_are_not_forwarded(
    proxy: Proxy, emulator: Emulator
) -> None:
    """mitmproxy forgot a stream whose END_STREAM and RST_STREAM it read together, ignored the
    reset, and sent the request on: 50 of 50 such pairs reached the API server."""
    client = proxy.h2("localhost")
    try:
        for i in range(50):
            stream_id = client.conn.get_next_available_stream_id()
            client.conn.send_headers(stream_id, [(":method", "GET"), (":scheme", "https"),
                                     (":authority", client.authority),
                                     (":path", f"/api/v1/pods?together-{i}"), *AUTH],
                                     end_stream=True)  # fmt: skip
            client.conn.reset_stream(stream_id, ErrorCodes.CANCEL)
            client.sock.sendall(client.conn.data_to_send())  # both frames in one TLS record
        response = client.response(client.request("GET", "/version", AUTH))
    finally:
        client.close()
    assert response.status == 200
    assert settled_count(emulator, "together-") == 0


class HeldRelay:
    """A TCP relay to the API server that holds every connection until released."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = threading.Event()
        self.released = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.listener.accept()
                self.accepted.set()
                threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        self.released.wait()
        upstream = socket.create_connection(("127.0.0.1", self.target))
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def test_a_stream_reset_while_connecting_upstream_is_not_forwarded(
    pki: Path, emulator: Emulator, tmp_path: Path
) -> None:
    """mitmproxy looks for a client's reset after each hook, not after its upstream connection
    opened: a request reset meanwhile was sent on once the connection was up."""
    relay = HeldRelay(emulator.port)
    proxy = start_proxy_for(pki, tmp_path, emulator.port, upstream={
        "servers": [f"https://127.0.0.1:{relay.port}"], "check_cluster_trust": False,
    })  # fmt: skip
    client = proxy.h2("localhost")
    try:
        stream_id = client.request("GET", "/api/v1/pods?connecting", AUTH)
        assert relay.accepted.wait(10)  # the proxy is opening its upstream connection
        client.reset(stream_id)
        client.ping()  # answered once the proxy has read the reset
        relay.released.set()
        response = client.response(client.request("GET", "/version", AUTH))
    finally:
        client.close()
        proxy.process.stop()
        relay.listener.close()
    assert response.status == 200
    assert settled_count(emulator, "connecting") == 0


def test_the_reset_budget_refills_over_a_minute() -> None:
    now = [0.0]
    budget = ResetBudget(3, clock=lambda: now[0])
    assert [budget.spend() for _ in range(4)] == [True, True, True, False]
    now[0] = 20.0  # a third of a minute: one more
    assert [budget.spend(), budget.spend()] == [True, False]
    now[0] = 1000.0  # never more than the budget at once
    assert [budget.spend() for _ in range(4)] == [True, True, True, False]


def test_the_reset_budget_is_configured(pki: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    write_yaml(config, proxy_config(pki, 6443, 8443))
    assert load_settings(config).http2_resets_per_minute == BOUND
    write_yaml(config, proxy_config(pki, 6443, 8443, limits={"http2_resets_per_minute": 7}))
    assert load_settings(config).http2_resets_per_minute == 7
    write_yaml(config, proxy_config(pki, 6443, 8443, limits={"http2_resets_per_minute": 0}))
    with pytest.raises(ConfigError, match=r"limits\.http2_resets_per_minute: must be at least 1"):
        load_settings(config)
