"""Hijacked connections: what a handler gets after a `101 Switching Protocols`.

Go handlers take the connection over with `http.Hijacker.Hijack()` (`net/http/server.go`) and
then speak WebSocket or SPDY on it; kube-apiserver does that for exec, attach and port-forward
(`k8s.io/apiserver pkg/util/proxy/websocket.go`, `streamtunnel.go`; the kubelet's
`pkg/cri/streaming/remotecommand/httpstream.go` through `httpstream/spdy/upgrade.go`).

Here an API handler returns a `Response` whose `hijack` holds the exact bytes Go's library would
write (the 101 head, or a bare refusal) and, for upgrades, a function that runs the protocol on a
`Tunnel`. OpenSSL forbids using one SSL object from two threads at once, so the connection's own
thread is the only one that reads or writes TLS: other threads hand bytes to `Tunnel.send`, which
queues them and wakes that thread through a socket pair.
"""

from __future__ import annotations

import collections
import contextlib
import io
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from OpenSSL import SSL

# Seconds a tunnel waits, after the peer's EOF, for its protocol to close it.
ABANDON_AFTER_EOF = 30.0


class Receiver(Protocol):
    """The protocol spoken on a tunnel (WebSocket, SPDY): told about bytes and the peer's EOF."""

    def data_received(self, data: bytes) -> None: ...

    def eof_received(self) -> None: ...


class Transport(Protocol):
    """Where a protocol writes; safe to call from any thread."""

    def send(self, data: bytes) -> None: ...

    def close(self, linger: float = 0.0) -> None:
        """Close once everything queued is written; with `linger`, first wait up to that many
        seconds for the peer to close (the peer's bytes keep flowing to the receiver)."""
        ...


@dataclass(frozen=True)
class Hijack:
    """A response written by the handler itself on the raw connection, never reused after.

    `head` is written as is. `run`, when given, then owns the connection until it returns.
    """

    head: bytes
    run: Callable[[Tunnel], None] | None = None


class TLSRaw(io.RawIOBase):
    """A pyOpenSSL connection as a raw stream for `io.BufferedReader`.

    EOF on close_notify or a dead peer (`eof` is then set). On a non-blocking socket a read with
    nothing ready returns None, BufferedReader's "would block".
    """

    def __init__(self, conn: SSL.Connection) -> None:
        self._conn = conn
        self.eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        try:
            n = self._conn.recv_into(buffer)
        except (SSL.WantReadError, SSL.WantWriteError):
            return None
        except SSL.ZeroReturnError:
            n = 0
        except (SSL.SysCallError, SSL.Error, OSError):
            # Abrupt disconnects and "unexpected eof" look the same to a request reader.
            n = 0
        if n == 0:
            self.eof = True
        return n


class Tunnel:
    """The hijacked TLS connection: `run` pumps bytes both ways on the connection's thread.

    Full duplex, like a Go server's separate reader and writer goroutines: the socket is made
    non-blocking, so the thread never sits in a write while the peer waits for it to read (a
    proxy in between that stops reading from us until we read from it would otherwise deadlock
    on large transfers).
    """

    def __init__(
        self,
        conn: SSL.Connection,
        sock: socket.socket,
        reader: io.BufferedReader[TLSRaw],
        raw: TLSRaw,
        stopping: threading.Event,
    ) -> None:
        self._conn = conn
        self._sock = sock
        self._reader = reader
        self._raw = raw
        self._stopping = stopping
        self._lock = threading.Lock()
        self._outbound: collections.deque[bytes] = collections.deque()
        self._writing = b""  # being written; OpenSSL wants the same bytes again after WantWrite
        self._close_at: float | None = None  # monotonic deadline once close() was called
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    # -- Transport, any thread ----------------------------------------------------------------

    def send(self, data: bytes) -> None:
        if not data:
            return
        with self._lock:
            if self._close_at is not None:
                return  # written after close(): dropped, like a write on a closed net.Conn
            self._outbound.append(data)
        self._wake()

    def close(self, linger: float = 0.0) -> None:
        with self._lock:
            deadline = time.monotonic() + linger
            if self._close_at is None or deadline < self._close_at:
                self._close_at = deadline
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    # -- the connection's thread --------------------------------------------------------------

    def run(self, receiver: Receiver) -> None:
        """Pump until closed, the peer is gone, or the server stops."""
        self._sock.setblocking(False)
        peer_gone = False
        gone_since = 0.0
        try:
            while not self._stopping.is_set():
                progressed = False
                if not peer_gone:
                    # Bytes already buffered behind the request head come first.
                    data = self._reader.read1(65536)
                    if data:
                        receiver.data_received(data)
                        progressed = True
                    elif self._raw.eof:
                        peer_gone, gone_since = True, time.monotonic()
                        receiver.eof_received()
                        progressed = True
                wrote = self._write_some()
                if wrote is None:
                    return
                with self._lock:
                    close_at = self._close_at
                    unsent = bool(self._outbound or self._writing)
                now = time.monotonic()
                if close_at is not None and not unsent and (peer_gone or now >= close_at):
                    return
                if peer_gone and close_at is None and now - gone_since > ABANDON_AFTER_EOF:
                    return  # never keep a thread for a protocol that forgot to close
                if progressed or wrote:
                    continue
                timeout = 0.1 if close_at is None else max(0.0, min(0.1, close_at - now))
                readers = [self._wake_r] if peer_gone else [self._sock, self._wake_r]
                writers = [self._sock] if unsent else []
                try:
                    select.select(readers, writers, [], timeout)
                except (OSError, ValueError):
                    return
                with contextlib.suppress(OSError):
                    self._wake_r.recv(4096)
        finally:
            self._wake_r.close()
            self._wake_w.close()
            with contextlib.suppress(OSError):
                self._sock.setblocking(True)

    def _write_some(self) -> bool | None:
        """Write what the socket takes now: True if anything went out, None if it broke."""
        wrote = False
        while True:
            if not self._writing:
                with self._lock:
                    if not self._outbound:
                        return wrote
                    # Coalesce small pieces (WebSocket frames, SPDY frames) into fewer records.
                    chunks = [self._outbound.popleft()]
                    while self._outbound and sum(map(len, chunks)) < 65536:
                        chunks.append(self._outbound.popleft())
                self._writing = b"".join(chunks)
            try:
                n = self._conn.send(self._writing)
            except (SSL.WantWriteError, SSL.WantReadError):
                return wrote
            except (SSL.Error, OSError):
                return None
            self._writing = self._writing[n:]
            wrote = True
