"""Faults: the API server restarting, a client stalling mid-upload, a half-open connection.

The proxy keeps serving everyone else, and each failure is a clear status with a Status body.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from tests.support.harness import start_emulator, start_proxy_for
from tests.support.users import basic_header, password_of

GOOD = basic_header("alice", password_of("alice"))


def test_api_server_restart_mid_run(pki: Path, tmp_path: Path) -> None:
    emulator = start_emulator(pki, tmp_path / "emulator")
    port = emulator.port
    proxy = start_proxy_for(pki, tmp_path / "proxy", port)
    try:
        assert proxy.raw("GET", "/version", [GOOD])[0] == 200
        emulator.process.stop()
        status, headers, body = proxy.raw("GET", "/version", [GOOD])
        assert headers["Content-Type"] == "application/json"
        assert status == 502
        assert json.loads(body)["reason"] == "BadGateway"
        emulator = start_emulator(pki, tmp_path / "emulator2", "--secure-port", str(port))
        assert proxy.raw("GET", "/version", [GOOD])[0] == 200
        assert proxy.whoami()["username"] == "alice"
    finally:
        proxy.process.stop()
        emulator.process.stop()


def test_stalled_upload_and_half_open_connections_do_not_block_others(
    pki: Path, tmp_path: Path
) -> None:
    emulator = start_emulator(pki, tmp_path / "emulator")
    proxy = start_proxy_for(pki, tmp_path / "proxy", emulator.port)
    context = proxy.context()
    idle: list[socket.socket] = []
    try:
        # Half-open: TCP connected, nothing sent, not even a TLS hello.
        for _ in range(5):
            idle.append(socket.create_connection(("127.0.0.1", proxy.port)))
        # Stalled upload: a logged-in request that promises 1 MB and sends 10 bytes.
        stalled = context.wrap_socket(
            socket.create_connection(("127.0.0.1", proxy.port)), server_hostname="localhost"
        )
        idle.append(stalled)
        stalled.sendall(
            b"POST /api/v1/namespaces/default/pods HTTP/1.1\r\nHost: localhost\r\n"
            + f"{GOOD[0]}: {GOOD[1]}\r\n".encode()
            + b"Content-Type: application/json\r\nContent-Length: 1048576\r\n\r\n0123456789"
        )
        start = time.monotonic()
        for _ in range(5):
            assert proxy.raw("GET", "/version", [GOOD])[0] == 200
        assert time.monotonic() - start < 5
    finally:
        for s in idle:
            s.close()
        proxy.process.stop()
        emulator.process.stop()
