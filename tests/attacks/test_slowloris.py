"""Slowloris: connections that never finish their TLS handshake or request head hold slots.

mitmproxy closes a client connection only after `tcp_timeout` without a byte (4 h here, for
quiet watches), so a few addresses holding half-sent request heads filled
`connections.max_total` and every new user was turned away, for as long as they liked. Here:
small limits, attackers from three loopback addresses that keep their slots full (reconnecting
whenever the proxy closes one), and a real user from a fourth.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kube_front_proxy.client.connection_limits import ConnectionLimits
from kube_front_proxy.client.deadlines import ClientDeadlines, ClientTimeouts
from kube_front_proxy.config.errors import ConfigError
from kube_front_proxy.config.settings import load_settings
from tests.support.configs import proxy_config, write_yaml
from tests.support.harness import Emulator, Proxy, start_proxy_for
from tests.support.users import basic_header, password_of
from tests.support.waiting import wait_until

HEAD_TIMEOUT = 2
KEEPALIVE = 3
ATTACKERS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
PER_ADDRESS = 2
GOOD = basic_header("alice", password_of("alice"))


@pytest.fixture(scope="module")
def proxy(
    pki: Path, emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    with start_proxy_for(
        pki, tmp_path_factory.mktemp("slowloris"), emulator.port,
        connections={"max_total": len(ATTACKERS) * PER_ADDRESS, "max_per_client": PER_ADDRESS},
        limits={"handshake_timeout_seconds": HEAD_TIMEOUT,
                "request_header_timeout_seconds": HEAD_TIMEOUT,
                "keepalive_timeout_seconds": KEEPALIVE},
    ) as p:  # fmt: skip
        yield p


def connect(proxy: Proxy, source: str, tls: bool = True) -> socket.socket:
    if tls:
        return proxy.connect(source, timeout=5)
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=5,
                                    source_address=(source, 0))  # fmt: skip


def is_closed(sock: socket.socket) -> bool:
    """Whether the proxy has closed the connection (reading, without waiting, what came)."""
    sock.setblocking(False)
    try:
        while select.select([sock], [], [], 0)[0]:
            if sock.recv(65536) == b"":
                return True
        return False
    except ssl.SSLWantReadError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)


class SlotHolder(threading.Thread):
    """An attacker at one address: always PER_ADDRESS connections holding half a request
    head, reconnecting as soon as the proxy closes one."""

    def __init__(self, proxy: Proxy, address: str) -> None:
        super().__init__(daemon=True)
        self.proxy = proxy
        self.address = address
        self.stop = threading.Event()
        self.opened = 0
        self.held: list[socket.socket] = []

    def run(self) -> None:
        while not self.stop.is_set():
            for sock in [s for s in self.held if is_closed(s)]:
                self.held.remove(sock)
                sock.close()
            while len(self.held) < PER_ADDRESS:
                try:
                    sock = connect(self.proxy, self.address)
                    sock.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                except OSError:
                    break  # refused (limits): try again later
                self.held.append(sock)
                self.opened += 1
            self.stop.wait(0.05)
        for sock in self.held:
            sock.close()


def test_slow_heads_from_three_addresses_do_not_keep_a_user_out(proxy: Proxy) -> None:
    attackers = [SlotHolder(proxy, address) for address in ATTACKERS]
    for attacker in attackers:
        attacker.start()
    try:
        # Every slot is held (the proxy admits before the handshake ends).
        wait_until(
            lambda: sum(len(a.held) for a in attackers) >= len(ATTACKERS) * PER_ADDRESS, 10,
            "the attackers could not fill the slots",
        )  # fmt: skip
        started = time.monotonic()
        request = b"GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        request += f"{GOOD[0]}: {GOOD[1]}\r\n\r\n".encode()
        answer = proxy.exchange(request, source="127.0.0.5")
        elapsed = time.monotonic() - started
        # Their half heads are closed by the head timeout (or for newcomers); they come back.
        wait_until(
            lambda: all(a.opened > PER_ADDRESS for a in attackers), HEAD_TIMEOUT + 3,
            lambda: [a.opened for a in attackers],
        )  # fmt: skip
    finally:
        for attacker in attackers:
            attacker.stop.set()
        for attacker in attackers:
            attacker.join()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert elapsed < HEAD_TIMEOUT


def test_half_a_head_is_closed_after_the_head_timeout(proxy: Proxy) -> None:
    with connect(proxy, "127.0.0.6") as sock:
        sock.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n")
        wait_until(lambda: is_closed(sock), HEAD_TIMEOUT + 1.5, "still open")


def test_no_handshake_is_closed_after_the_handshake_timeout(proxy: Proxy) -> None:
    with connect(proxy, "127.0.0.6", tls=False) as sock:
        wait_until(lambda: is_closed(sock), HEAD_TIMEOUT + 1.5, "still open")


def test_idle_after_a_login_closed_after_keepalive_a_watch_is_not(
    proxy: Proxy, emulator: Emulator
) -> None:
    request = f"GET /version HTTP/1.1\r\nHost: x\r\n{GOOD[0]}: {GOOD[1]}\r\n\r\n".encode()
    watch = (
        "GET /api/v1/namespaces/default/pods?watch=true&timeoutSeconds="
        f"{KEEPALIVE + HEAD_TIMEOUT + 1} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"{GOOD[0]}: {GOOD[1]}\r\n\r\n"
    ).encode()
    with connect(proxy, "127.0.0.7") as idle:
        idle.sendall(request)
        assert idle.recv(65536).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        # A quiet watch outlives every timeout: only its own timeoutSeconds ends it.
        answer = proxy.exchange(watch, source="127.0.0.7")
        watched = time.monotonic() - started
        assert is_closed(idle)  # meanwhile: idle longer than the keep-alive timeout
    assert answer.startswith(b"HTTP/1.1 200") and answer.rstrip().endswith(b"0")
    assert watched >= KEEPALIVE + HEAD_TIMEOUT


def test_deadlines() -> None:
    now = [0.0]
    deadlines = ClientDeadlines(ClientTimeouts(handshake=5, request_header=10, keepalive=90),
                                clock=lambda: now[0])  # fmt: skip
    deadlines.connected("a")
    deadlines.connected("b")
    deadlines.handshake_done("b")
    now[0] = 5
    assert deadlines.expired() == [("a", "TLS handshake within 5 s")]
    deadlines.request_started("b", "f1")
    deadlines.request_started("b", "f2")  # HTTP/2: two streams
    now[0] = 1000
    assert deadlines.expired() == []  # requests in flight: no deadline
    deadlines.request_done("b", "f1", logged_in=True)
    assert deadlines.expired() == []
    deadlines.request_done("b", "f2", logged_in=True)
    now[0] = 1089
    assert deadlines.expired() == []
    now[0] = 1090
    assert deadlines.expired() == [("b", "next request head within 90 s")]
    # Without a login, the next head gets the head timeout; an upgrade has no deadline.
    deadlines.connected("c")
    deadlines.request_started("c", "f3")
    deadlines.request_done("c", "f3", logged_in=False)
    deadlines.connected("d")
    deadlines.request_started("d", "f4")
    deadlines.request_done("d", "f4", logged_in=True, upgraded=True)
    now[0] = 1100
    assert deadlines.expired() == [("c", "request head within 10 s")]
    now[0] = 10**6
    assert deadlines.expired() == []


def test_the_oldest_connection_without_a_login_makes_room() -> None:
    limits = ConnectionLimits(max_total=3, max_per_client=2)
    for connection_id, address in [("a1", "10.0.0.1"), ("b1", "10.0.0.2"), ("b2", "10.0.0.2")]:
        assert limits.make_room(address) is None  # room left
        assert limits.admit(connection_id, address) is None
    limits.logged_in("a1")
    assert limits.make_room("10.0.0.2") is None  # at its own limit: refused, nobody closed
    assert limits.make_room("10.0.0.3") == "b1"  # a1 logged in: the oldest other one
    assert limits.admit("c1", "10.0.0.3") is None
    limits.release("b1", "10.0.0.2")  # its close comes later: already counted out
    limits.logged_in("b2")
    limits.logged_in("c1")
    assert limits.make_room("10.0.0.4") is None  # all logged in
    assert limits.admit("d1", "10.0.0.4") == "too many connections (3)"


def test_timeouts_are_configured(pki: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    write_yaml(config, proxy_config(pki, 6443, 8443))
    s = load_settings(config)
    assert (s.handshake_timeout, s.request_header_timeout, s.keepalive_timeout) == (10, 10, 90)
    for key in ("handshake_timeout_seconds", "request_header_timeout_seconds",
                "keepalive_timeout_seconds"):  # fmt: skip
        write_yaml(config, proxy_config(pki, 6443, 8443, limits={key: 0}))
        with pytest.raises(ConfigError, match=rf"limits\.{key}: must be at least 1"):
            load_settings(config)
