"""Lingering close: a client connection ended after a final answer keeps that answer.

The proxy ends a client's connection right after a final answer in three places: an HTTP/2
GOAWAY for too many resets (rapid_reset.py) or for an oversized frame or header block
(h2_client_frames.py), and an HTTP/1 refusal with `Connection: close` sent before the request
was read whole (body_after_login.py: 401, 403, 429; request_size.py: 413, 431). The client is
often still sending then: the rest of its resets, its frames, its body. mitmproxy closed the
socket at once (`ConnectionHandler.close_connection` cancels the reader, whose task closes the
transport), so the kernel answered the bytes left unread, and those arriving later, with a
TCP RST; the client's next write failed with "connection reset", and its TLS stack would not
read on: the answer that said why (GOAWAY's code, the Status) was lost (the rapid reset test
saw no GOAWAY in 2 of 10 runs on a loaded machine).

As nginx's `lingering_close` and Go's servers (http2: GOAWAY, then reads on for up to 1 s;
net/http: `closeWriteAndWait`) do, a connection marked with `after_final_answer` is closed
in steps when mitmproxy next closes it:

1. TLS close_notify after the answer (`TLSLayer.send_close` sends none: Go's client reports a
   GOAWAY's code only when the stream ends cleanly, else "unexpected EOF");
2. mitmproxy's close goes on as before (its handler ends, the disconnect hooks run, the
   connection's slot under `connections.max_total` is free at once), but the socket is kept
   open by a duplicate of its descriptor, so that mitmproxy's close does not reset it;
3. once mitmproxy's transport has written what it held, `shutdown(SHUT_WR)` (FIN); what the
   client still sends is read into one fixed buffer and dropped (never parsed, decrypted or
   kept) until the client closes its side, LINGER_BYTES have come or LINGER_SECONDS have
   passed since the close; then the socket is closed.

Bounds: a lingering socket costs one descriptor and no memory beyond the kernel's buffers; at
most MAX_LINGERING at once (past that a close is immediate, as before). nginx's defaults
(lingering_time 30 s, lingering_timeout 5 s) are sized for slow uploads it still wants; a
refused client only needs to stop sending and read its answer, so 2 s, and 16 MiB (more than
the largest body the proxy takes by default, so a refused upload of that size still reads
its answer; a few ms of copying at most).

No public hook sees a connection being closed: the close is a private method of mitmproxy's
connection handler, and close_notify is its TLS layer's.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import weakref

from mitmproxy.connection import Connection
from mitmproxy.proxy import commands, layer
from mitmproxy.proxy.layers.tls import TLSLayer
from mitmproxy.proxy.server import ConnectionHandler
from mitmproxy.proxy.tunnel import TunnelState
from OpenSSL import SSL

from kube_front_proxy.seam import original, pin, replace

LINGER_SECONDS = 2.0
LINGER_BYTES = 16 * 1024 * 1024
MAX_LINGERING = 256
_CHUNK = 64 * 1024

_marked: weakref.WeakSet[Connection] = weakref.WeakSet()
# Referenced here while they run (the event loop keeps only weak references to tasks).
_lingering: set[asyncio.Task[None]] = set()


def lingering() -> int:
    """Sockets lingering now (at most MAX_LINGERING)."""
    return len(_lingering)


def after_final_answer(connection: Connection) -> None:
    """The next close of this client connection lingers (call before yielding the answer's
    last command, or the CloseConnection)."""
    _marked.add(connection)


async def discard(sock: socket.socket, deadline: float, max_bytes: int) -> int:
    """Read and drop what the peer sends until it closes its side, `max_bytes` have come or
    the loop's clock reaches `deadline`; how many bytes were dropped."""
    loop = asyncio.get_running_loop()
    buffer = bytearray(_CHUNK)
    received = 0
    with contextlib.suppress(TimeoutError, OSError):
        async with asyncio.timeout_at(deadline):
            while received < max_bytes:
                n = await loop.sock_recv_into(sock, buffer)
                if not n:
                    break
                received += n
    return received


async def _linger(writer: asyncio.StreamWriter, sock: socket.socket) -> None:
    deadline = asyncio.get_running_loop().time() + LINGER_SECONDS
    try:
        try:
            async with asyncio.timeout_at(deadline):
                # mitmproxy's transport writes what it still holds, then closes its descriptor.
                await writer.wait_closed()
        except TimeoutError:
            writer.transport.abort()  # a client that reads nothing: its answer cannot get out
            return
        sock.shutdown(socket.SHUT_WR)
        await discard(sock, deadline, LINGER_BYTES)
    except OSError:
        pass  # the client is gone (reset, broken pipe): nothing left to linger for
    finally:
        sock.close()


def _start(writer: object) -> None:
    if not isinstance(writer, asyncio.StreamWriter) or writer.is_closing():
        return
    if len(_lingering) >= MAX_LINGERING:
        return
    transport_socket = writer.get_extra_info("socket")
    if transport_socket is None:
        return
    kept = socket.fromfd(transport_socket.fileno(), transport_socket.family, transport_socket.type)
    kept.setblocking(False)
    task = asyncio.get_running_loop().create_task(_linger(writer, kept))
    _lingering.add(task)
    task.add_done_callback(_lingering.discard)


def _close_connection(
    self: ConnectionHandler, connection: Connection, half_close: bool = False
) -> None:
    if not half_close and connection in _marked:
        _marked.discard(connection)
        io = self.transports.get(connection)
        if io is not None:
            _start(io.writer)
    original(ConnectionHandler, "close_connection")(self, connection, half_close)


def _send_close(self: TLSLayer, command: commands.CloseConnection) -> layer.CommandGenerator[None]:
    if command.connection in _marked and self.tunnel_state is TunnelState.OPEN:
        with contextlib.suppress(SSL.Error):
            self.tls.shutdown()
        yield from self.tls_interact()
    yield from original(TLSLayer, "send_close")(self, command)


def install() -> None:
    """Idempotent."""
    replace(
        ConnectionHandler,
        "close_connection",
        _close_connection,
        fingerprint="9ec60a685e608fd3",
        why="a client connection closed after a final answer keeps its socket, half-closed "
        "and read from for a bounded time, so that the answer is not lost to a TCP reset",
    )
    replace(
        TLSLayer,
        "send_close",
        _send_close,
        fingerprint="232eff412a8f718b",
        why="TLS close_notify after a final answer (lingering close)",
    )
    pin(
        ConnectionHandler,
        "handle_connection",
        fingerprint="2cd24c42884752ac",
        why="a cancelled read loop closes the connection's writer (lingering close waits for "
        "that, then shuts the socket down itself)",
    )
    pin(
        TLSLayer,
        "tls_interact",
        fingerprint="d362940844f8eff2",
        why="yields what OpenSSL has to send (the close_notify)",
    )
