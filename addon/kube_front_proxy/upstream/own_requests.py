"""The proxy's own requests to an API server (health checks, the cluster-trust check).

The TLS connection comes from the same UpstreamTLS as the proxied requests (same CA, SNI and
name check, same front-proxy client certificate), driven through pyOpenSSL's memory BIO, so
the key never has to be written to a file for Python's ssl module. The response is read with
h11, so a chunked body (Go's net/http chunks any body it did not have whole) reads as well as
one with a Content-Length.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import h11
from OpenSSL import SSL

from kube_front_proxy.identity.headers import Identity, IdentityHeaderWriter
from kube_front_proxy.tls import UpstreamTLS
from kube_front_proxy.upstream.pool import Address

HeaderLines = tuple[tuple[bytes, bytes], ...]
MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


def own_identity(writer: IdentityHeaderWriter, user: str, token: bytes | None) -> HeaderLines:
    """How the proxy says who it is: in impersonation mode its token (these requests are no
    flow, so the token itself is written), else front-proxy headers for a user of its own."""
    if token:
        return ((b"Authorization", b"Bearer " + token),)
    return writer.lines_for(Identity(user))


def get_request(tls: UpstreamTLS, path: str, agent: str, identity: HeaderLines) -> bytes:
    """The bytes of `GET path` on a connection that the server closes after answering."""
    return b"".join(
        [
            b"GET " + path.encode() + b" HTTP/1.1\r\n",
            b"Host: " + tls.server_name.encode("idna") + b"\r\n",
            b"User-Agent: " + agent.encode() + b"\r\n",
            b"Accept: application/json\r\n",
            *(name + b": " + value + b"\r\n" for name, value in identity),
            b"Connection: close\r\n\r\n",
        ]
    )


async def send(
    tls: UpstreamTLS, address: Address, request: bytes, max_body: int = MAX_BODY_BYTES
) -> Answer:
    """Send request to address over the proxy's TLS and read the whole answer.

    Raises OSError, SSL.Error or h11.ProtocolError; ValueError for a body over max_body.
    """
    reader, writer = await asyncio.open_connection(*address)
    try:
        conn = tls.connection([b"http/1.1"])
        while True:
            try:
                conn.do_handshake()
                break
            except SSL.WantReadError:
                await _exchange(conn, reader, writer)
        conn.sendall(request)
        return await _read_answer(conn, reader, writer, max_body)
    finally:
        writer.close()


async def _read_answer(
    conn: SSL.Connection,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    max_body: int,
) -> Answer:
    parser = h11.Connection(h11.CLIENT)
    # h11 must see its own request go out before it accepts a response.
    parser.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    parser.send(h11.EndOfMessage())
    status = 0
    body = b""
    while True:
        event = parser.next_event()
        if event is h11.NEED_DATA:
            parser.receive_data(await _receive(conn, reader, writer))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > max_body:
                raise ValueError(f"answer over {max_body} bytes")
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            if not status:
                raise ConnectionError("closed before an answer")
            return Answer(status, body)


async def _receive(
    conn: SSL.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> bytes:
    """The next decrypted bytes; b"" once the server has closed the TLS session."""
    while True:
        try:
            return conn.recv(65536)
        except SSL.WantReadError:
            try:
                await _exchange(conn, reader, writer)
            except ConnectionError:
                return b""
        except SSL.ZeroReturnError:
            return b""


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
