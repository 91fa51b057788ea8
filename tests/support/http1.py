"""Raw HTTPS/1.1 clients: one request with exactly the headers given, raw bytes over TLS, and a
connection that sends exact bytes (malformed ones included) and reads every response in order."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any


def raw_request(
    host: str,
    port: int,
    context: ssl.SSLContext,
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    body: bytes | None = None,
    timeout: float = 30,
    source: str | None = None,
) -> tuple[int, list[tuple[str, str]], bytes]:
    """One HTTPS/1.1 request with exactly these headers, repeated names included; from the
    source address if given (any of 127.0.0.0/8 reaches a proxy on 127.0.0.1)."""
    conn = http.client.HTTPSConnection(
        host, port, context=context, timeout=timeout,
        source_address=(source, 0) if source else None,
    )  # fmt: skip
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value.encode("utf-8"))
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        conn.close()


def tls_exchange(
    port: int,
    context: ssl.SSLContext,
    data: bytes,
    *,
    source: str = "127.0.0.1",
    timeout: float = 10,
    until: bytes | None = None,
) -> bytes:
    """Send raw bytes over one TLS connection from `source` and read until the server closes
    it, or what has come holds `until` (or `timeout` passes without a byte: then what came so
    far, for a hung connection)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(data)
        out = b""
        while True:
            try:
                chunk = tls.recv(65536)
            except (TimeoutError, ssl.SSLError, OSError):
                return out
            if not chunk:
                return out
            out += chunk
            if until is not None and until in out:
                return out


@dataclass
class H1Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n.lower() == name.lower()), None)


class H1Connection:
    """One TLS connection that must negotiate HTTP/1.1 (or no ALPN at all)."""

    def __init__(self, port: int, context: ssl.SSLContext, server_name: str = "localhost",
                 timeout: float = 30) -> None:  # fmt: skip
        context.set_alpn_protocols(["http/1.1"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = context.wrap_socket(raw, server_hostname=server_name)
        assert self.sock.selected_alpn_protocol() in ("http/1.1", None)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self, method: str = "GET") -> H1Response | None:
        """The next response, or None when the connection ends before one starts."""
        try:
            line = self.file.readline()
        except (ConnectionError, ssl.SSLError):
            return None
        if not line:
            return None
        status = int(line.split()[1])
        headers = []
        while (line := self.file.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name, value.strip()))
        response = H1Response(status, headers)
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return response
        if "chunked" in (response.header("transfer-encoding") or "").lower():
            response.body = self._chunked()
        elif (length := response.header("content-length")) is not None:
            response.body = self.file.read(int(length))
        else:
            response.body = self.file.read()
        return response

    def _chunked(self) -> bytes:
        body = b""
        while size := int(self.file.readline().split(b";")[0], 16):
            body += self.file.read(size)
            self.file.readline()
        while self.file.readline() not in (b"\r\n", b"\n", b""):
            pass
        return body

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def read_response(sock: ssl.SSLSocket) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Read one response that ends with the connection or has a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return int(lines[0].split()[1]), headers, json.loads(body)
