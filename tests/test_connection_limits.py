"""Connection limits, in total and per client address."""

from __future__ import annotations

from pathlib import Path

from kube_front_proxy.client.connection_limits import ConnectionLimits
from tests.support.harness import Emulator, Proxy, start_proxy_for
from tests.support.users import basic_header, password_of
from tests.support.waiting import wait_until


def test_limits_count_and_release() -> None:
    limits = ConnectionLimits(max_total=3, max_per_client=2)
    assert limits.admit("a1", "10.0.0.1") is None
    assert limits.admit("a2", "10.0.0.1") is None
    assert limits.admit("a3", "10.0.0.1") == "too many connections from 10.0.0.1 (2)"
    assert limits.admit("b1", "10.0.0.2") is None
    assert limits.admit("c1", "10.0.0.3") == "too many connections (3)"
    limits.release("a3", "10.0.0.1")  # never admitted: nothing to release
    assert limits.open == 3
    limits.release("a1", "10.0.0.1")
    assert limits.admit("c1", "10.0.0.3") is None


def is_refused(proxy: Proxy) -> bool:
    """Whether the proxy closes a new connection without serving it."""
    try:
        extra = proxy.connect(timeout=5)
        extra.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
        return extra.recv(1) == b""
    except OSError:  # ssl.SSLError included: closed during the handshake
        return True


def test_a_client_over_its_limit_is_refused_others_are_not(
    pki: Path, emulator: Emulator, tmp_path: Path
) -> None:
    proxy = start_proxy_for(
        pki, tmp_path, emulator.port, connections={"max_per_client": 3, "max_total": 100}
    )
    held = []
    try:
        held = [proxy.connect(timeout=5) for _ in range(3)]
        assert is_refused(proxy)
        assert "too many connections from 127.0.0.1 (3)" in proxy.process.output()
        held.pop().close()
        login = [basic_header("alice", password_of("alice"))]

        def served() -> bool:
            try:
                return proxy.raw("GET", "/version", login)[0] == 200
            except OSError:  # refused: the proxy has not seen the close yet
                return False

        wait_until(served)
    finally:
        for s in held:
            s.close()
        proxy.process.stop()
