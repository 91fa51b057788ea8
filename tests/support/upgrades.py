"""kubectl exec, attach and port-forward through the proxy: which protocol kubectl speaks, the
checks on an upgrade the API server received, and a raw TLS connection for upgrade bytes."""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any

from .harness import Emulator, Proxy
from .processes import KUBECTL, read_until
from .users import ALICE, ALICE_LINES

IDENTITY = re.compile(r"(?i)^(x-remote-|authorization$)")
REMOTE_COMMAND_ENV = {
    "websocket": {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "true"},
    "spdy": {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"},
}
PORT_FORWARD_ENV = {
    "websocket": {"KUBECTL_PORT_FORWARD_WEBSOCKETS": "true"},
    "spdy": {"KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"},
}
PROTOCOLS = sorted(REMOTE_COMMAND_ENV)
TIMEOUT = 15


def kubectl(
    proxy: Proxy, *args: str, env: dict[str, str], stdin: bytes = b"", password: str | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [KUBECTL, "--kubeconfig", str(proxy.kubeconfig("alice", password)), *args],
        input=stdin, capture_output=True, timeout=TIMEOUT, env={**os.environ, **env},
    )  # fmt: skip


def upgrade_records(emulator: Emulator, before: int, path: str) -> list[dict[str, Any]]:
    """The requests to this streaming path since `before`, in order."""
    return [r for r in emulator.requests()[before:] if r["path"].split("?")[0] == path]


def header(record: dict[str, Any], name: str) -> list[str]:
    return [v for n, v in record["headers"] if n.lower() == name.lower()]


def assert_upgrade_as_alice(record: dict[str, Any], protocol: str, subprotocol: str) -> None:
    """The upgrade went over `protocol`, was switched, and carried the proxy's identity only."""
    if protocol == "websocket":
        assert record["method"] == "GET"
        assert header(record, "Upgrade") == ["websocket"]
        assert header(record, "Sec-WebSocket-Protocol") == [subprotocol]
    else:
        assert record["method"] == "POST"
        assert header(record, "Upgrade") == ["SPDY/3.1"]
        assert subprotocol in header(record, "X-Stream-Protocol-Version")
    assert record["status"] == 101
    assert [h for h in record["headers"] if IDENTITY.match(h[0])] == ALICE_LINES
    assert record["peer_cert_cn"] == "front-proxy-client"
    auth = record["authentication"]
    assert auth["authenticator"] == "requestheader"
    assert auth["user"]["username"] == "alice"
    assert auth["user"]["groups"] == [*ALICE["groups"], "system:authenticated"]


class RawTLS:
    """One TLS connection that sends an upgrade request and then raw bytes, for tests."""

    def __init__(self, port: int, cafile: Path | None, server_name: str = "127.0.0.1") -> None:
        context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
        if cafile is None:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock = context.wrap_socket(raw, server_hostname=server_name)
        self.host = f"127.0.0.1:{port}"
        self.buffer = b""

    def response_head(self) -> tuple[int, dict[str, str]]:
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.recv()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        fields = dict(line.split(": ", 1) for line in lines[1:])
        return int(lines[0].split()[1]), fields

    def recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise AssertionError(f"connection closed; buffered {self.buffer!r}")
        return data

    def take(self) -> bytes:
        """What is buffered, or else the next bytes to arrive."""
        data, self.buffer = self.buffer or self.recv(), b""
        return data

    def body(self, fields: dict[str, str]) -> bytes:
        """The body of a refusal: Content-Length bytes, or up to the end of the stream."""
        length = int(fields.get("Content-Length", -1))
        out = self.buffer
        while len(out) != length and (data := self.sock.recv(65536)):
            out += data
        return out

    def close(self) -> None:
        self.sock.close()


def read_forwarded_ports(proc: subprocess.Popen[bytes], count: int) -> dict[int, int]:
    """Remote port -> local port, from kubectl port-forward's "Forwarding from" lines."""

    def forwarded(seen: bytes) -> dict[int, int]:
        return {
            int(remote): int(local)
            for local, remote in re.findall(rb"127\.0\.0\.1:(\d+) -> (\d+)", seen)
        }

    return forwarded(read_until(proc, lambda seen: len(forwarded(seen)) == count, TIMEOUT))


def talk(port: int, data: bytes) -> bytes:
    """Send data to a local port, half-close, and read the answer to the end."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<dir>"
        for p in sorted(root.rglob("*"))
    }
