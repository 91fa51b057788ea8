"""The active health check: GET /readyz over the proxy's own mutual TLS.

The TLS connection comes from the same UpstreamTLS as the proxied requests (same CA, SNI and
name check, same front-proxy client certificate), driven through pyOpenSSL's memory BIO, so
the key never has to be written to a file for Python's ssl module. The check says who it is in
the identity headers, so it passes with anonymous auth off too: kube-apiserver's bootstrap
ClusterRole system:public-info-viewer lets every authenticated user read /readyz
(plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go).
"""

from __future__ import annotations

import asyncio

from OpenSSL import SSL

from .config import HealthCheck
from .identity import Identity, IdentityHeaderWriter
from .tls import UpstreamTLS
from .upstreams import Address, Probe

HEALTH_CHECK_USER = "system:kube-front-proxy:health-check"


def readyz_probe(
    tls: UpstreamTLS, check: HealthCheck, writer: IdentityHeaderWriter, token: bytes | None = None
) -> Probe:
    """A probe that is True when the server answers check.path with 200 within the timeout.

    It asks as the proxy itself: in impersonation mode with its token (this request is no
    flow, so the token itself is written), else as a front-proxy user of its own.
    """
    if token:
        identity: tuple[tuple[bytes, bytes], ...] = ((b"Authorization", b"Bearer " + token),)
    else:
        identity = writer.lines_for(Identity(HEALTH_CHECK_USER))
    head = b"".join(
        [
            b"GET " + check.path.encode() + b" HTTP/1.1\r\n",
            b"Host: " + tls.server_name.encode("idna") + b"\r\n",
            b"User-Agent: kube-front-proxy-health-check\r\n",
            *(name + b": " + value + b"\r\n" for name, value in identity),
            b"Connection: close\r\n\r\n",
        ]
    )

    async def probe(address: Address) -> bool:
        try:
            async with asyncio.timeout(check.timeout):
                return await _status(tls, address, head) == 200
        except (OSError, TimeoutError, SSL.Error, ValueError):
            return False

    return probe


async def _status(tls: UpstreamTLS, address: Address, head: bytes) -> int:
    reader, writer = await asyncio.open_connection(*address)
    try:
        conn = tls.connection([b"http/1.1"])
        while True:
            try:
                conn.do_handshake()
                break
            except SSL.WantReadError:
                await _exchange(conn, reader, writer)
        conn.sendall(head)
        response = b""
        while b"\r\n" not in response:
            try:
                response += conn.recv(4096)
            except SSL.WantReadError:
                await _exchange(conn, reader, writer)
            except SSL.ZeroReturnError:
                break
        version, _, rest = response.partition(b" ")
        if not version.startswith(b"HTTP/1."):
            raise ValueError("not an HTTP/1 response")
        return int(rest[:3])
    finally:
        writer.close()


async def _exchange(
    conn: SSL.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Send what OpenSSL has written, then feed it what the server sends next."""
    pending = _drain(conn)
    if pending:
        writer.write(pending)
        await writer.drain()
    data = await reader.read(65536)
    if not data:
        raise ConnectionError("closed by the server")
    conn.bio_write(data)


def _drain(conn: SSL.Connection) -> bytes:
    out = b""
    while True:
        try:
            out += conn.bio_read(65536)
        except SSL.WantReadError:
            return out
