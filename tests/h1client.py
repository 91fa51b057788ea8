"""A raw HTTP/1.1 client for attack tests: exact request bytes out (malformed ones included),
every response on the connection read back in order."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field


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
