"""HTTP/2 for the emulated kube-apiserver, with the `h2` library.

kube-apiserver serves HTTP/2 with `golang.org/x/net/http2` (`k8s.io/apiserver pkg/server/
secure_serving.go` `Serve`: `http2.ConfigureServer` with MaxConcurrentStreams 100 (1.36's
default without --http2-max-streams-per-connection; older releases 250),
MaxUploadBufferPerStream and MaxReadFrameSize 256 KiB, MaxUploadBufferPerConnection 100 times
that; a real kube-apiserver 1.36 sends exactly these SETTINGS). What is emulated, from
`x/net/http2/server.go`:

- every stream goes through the same handler chain as an HTTP/1.1 request, in its own thread
  (`serverConn.runHandler` starts a goroutine per stream), once its request body is complete;
- the request's headers are logged as received (HTTP/2 names are lowercase) without the
  pseudo-headers (`:authority` becomes Go's `Request.Host`, not a header); its version is
  `HTTP/2.0`;
- a malformed request (uppercase or connection-specific header names, `te` other than
  `trailers`, missing or misplaced pseudo-headers) is reset with PROTOCOL_ERROR, a stream error
  (`Framer.readMetaFrame`, `checkValidHTTP2RequestHeaders`). So no upgrade can happen here:
  `Connection` and `Upgrade` cannot be sent, and without them exec, attach and portforward
  answer 400 "Upgrade request required" (Go's HTTP/2 ResponseWriter cannot be hijacked either);
- responses: lowercase header names, sorted, then `date`, and `content-length` only when the
  handler finished within its first 4 KiB (`handlerChunkWriteSize`); bodies, watches and
  `logs -f` go out as DATA frames within the client's flow-control windows;
- RST_STREAM from the client ends that stream's handler (Go cancels its request context), and
  the other streams carry on;
- GOAWAY (`serverConn.goAway`, `startGracefulShutdown`): a response whose handler set
  `Connection: close` (kube-apiserver's `--goaway-chance` filter, its answers to unauthenticated
  requests) or a graceful server shutdown sends GOAWAY with NO_ERROR and the highest client
  stream id seen so far, BEFORE that response's HEADERS (Go's write scheduler puts GOAWAY ahead
  of queued frames); the header itself is not sent. Streams up to that id finish; frames of
  streams above it are ignored (`processFrame`), their DATA only returning connection-level
  flow control; once no stream is open the connection closes `GOAWAY_TIMEOUT` later (Go's
  `goAwayTimeout`, one second), whatever the client does meanwhile;
- an idle connection (no open stream for `IdleTimeout`, 90 s in `secure_serving.go`,
  `EmulatorConfig.idle_timeout` here) gets the same graceful GOAWAY.

OpenSSL forbids using one SSL object from two threads, so the connection's own thread alone
reads and writes TLS and drives the h2 state machine (non-blocking, like `tunnel.Tunnel`);
handler threads queue their response on the stream and wait while more than `HIGH_WATER` bytes
of it are unsent, which bounds what a slow reader makes the server hold beyond the body itself.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import re
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import GoAwayFrame
from OpenSSL import SSL

from . import http11
from .api import Hold, Request, Response

log = logging.getLogger("kube-apiserver-emulator")

MAX_CONCURRENT_STREAMS = 100
UPLOAD_BUFFER_PER_STREAM = 256 * 1024
HANDLER_CHUNK_WRITE_SIZE = 4 << 10
HIGH_WATER = 1 << 20
# Bytes handed to TLS but not yet written, above which no more DATA is framed for now.
OUTPUT_HIGH_WATER = 1 << 20
# Go's goAwayTimeout: how long a connection stays open after GOAWAY once no stream is open.
GOAWAY_TIMEOUT = 1.0

_CONFIG = h2.config.H2Configuration(
    client_side=False,
    header_encoding=None,
    # Checked here instead, so that a bad request is a stream error as in Go, not a GOAWAY.
    validate_inbound_headers=False,
    normalize_inbound_headers=False,
)
_LOWERCASE_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
_CONNECTION_HEADERS = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
_PSEUDO_HEADERS = frozenset({b":method", b":scheme", b":authority", b":path"})

Handle = Callable[[Request], Response]


def parse_request(headers: list[tuple[bytes, bytes]]) -> Request | None:
    """The request a HEADERS block asks for, or None when Go would reset the stream."""
    pseudo: dict[bytes, bytes] = {}
    regular: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if name.startswith(b":"):
            if regular or name in pseudo or name not in _PSEUDO_HEADERS:
                return None
            pseudo[name] = value
        elif not _LOWERCASE_TOKEN.fullmatch(name) or name in _CONNECTION_HEADERS:
            return None
        else:
            regular.append((name, value))
    te = [v for n, v in regular if n == b"te"]
    if len(te) > 1 or te[0:1] not in ([], [b"trailers"], [b""]):
        return None
    method, path = pseudo.get(b":method"), pseudo.get(b":path")
    if not method or not path or not pseudo.get(b":scheme"):
        return None  # CONNECT, the one request without them, is no API request
    return Request(
        method=_decode(method),
        target=_decode(path),
        http_version="HTTP/2.0",
        headers=[(_decode(n), _decode(v)) for n, v in regular],
    )


def response_headers(response: Response, content_length: int | None) -> list[tuple[str, str]]:
    """The HEADERS block Go writes: `:status`, the handler's headers lowercased and sorted
    but for `connection` (`writeChunk` deletes it: `close` means GOAWAY instead), `date`, and
    `content-length` when known (`writeResHeaders`, `responseWriterState`)."""
    out = [(":status", str(response.status))]
    out += sorted((n.lower(), v) for n, v in response.headers if n.lower() != "connection")
    names = {n for n, _ in out}
    if "date" not in names:
        out.append(("date", http11.http_date()))
    if content_length is not None and "content-length" not in names:
        out.append(("content-length", str(content_length)))
    return out


def asks_for_goaway(response: Response) -> bool:
    """`Connection: close` set by a handler: Go's HTTP/2 server then starts a graceful
    shutdown of the connection (`writeChunk` calls `startGracefulShutdown`)."""
    return (response.header("Connection") or "").lower() == "close"


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


@dataclass(eq=False)
class _Stream:
    id: int
    request: Request | None
    body: bytearray = field(default_factory=bytearray)
    # Written by the handler thread, taken by the connection thread, under the connection lock.
    head: list[tuple[str, str]] | None = None
    head_sent: bool = False
    goaway: bool = False  # GOAWAY goes out before this stream's head
    pending: collections.deque[memoryview] = field(default_factory=collections.deque)
    pending_bytes: int = 0
    ended: bool = False  # the handler is done: END_STREAM once pending is out
    reset: ErrorCodes | None = None  # the handler failed: reset instead
    closed: bool = False  # reset either way, or ended: nothing more goes out


class Http2Connection:
    """One HTTP/2 connection after the TLS handshake; `serve` runs on the connection's thread."""

    def __init__(
        self,
        conn: SSL.Connection,
        sock: socket.socket,
        handle: Handle,
        delay: Callable[[], float],
        stopping: threading.Event,
        name: str,
        idle_timeout: float,
    ) -> None:
        self._conn = conn
        self._sock = sock
        self._handle = handle
        self._delay = delay
        self._stopping = stopping
        self._name = name
        self._h2 = h2.connection.H2Connection(_CONFIG)
        self._h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
                SettingCodes.INITIAL_WINDOW_SIZE: UPLOAD_BUFFER_PER_STREAM,
                SettingCodes.MAX_FRAME_SIZE: UPLOAD_BUFFER_PER_STREAM,
            },
        )
        # Initial values are not "changes" h2 applies on the client's ACK: the frame size it
        # accepts must follow what is advertised, or a client's 256 KiB frame is a GOAWAY.
        self._h2.max_inbound_frame_size = UPLOAD_BUFFER_PER_STREAM
        self._streams: dict[int, _Stream] = {}
        self._cond = threading.Condition()
        self._out = bytearray()
        self._closing = False
        self._idle_timeout = idle_timeout
        self._idle_since = time.monotonic()
        self._max_client_stream = 0
        self._goaway_wanted = False  # set by handler threads and shutdown(), under the lock
        self._goaway_last: int | None = None  # the last stream id of the GOAWAY sent
        self._close_at: float | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    # -- the connection's thread --------------------------------------------------------------

    def serve(self) -> None:
        """Run until the client goes away, breaks the protocol, or the server stops."""
        self._sock.setblocking(False)
        self._h2.initiate_connection()
        connection_buffer = UPLOAD_BUFFER_PER_STREAM * MAX_CONCURRENT_STREAMS
        self._h2.increment_flow_control_window(
            connection_buffer - self._h2.inbound_flow_control_window
        )
        try:
            while not self._stopping.is_set():
                progressed = self._read() if not self._closing else False
                with self._cond:
                    if self._goaway_wanted:
                        self._send_goaway()
                    self._pump()
                    self._cond.notify_all()
                self._after_goaway()
                self._out += self._h2.data_to_send()
                wrote = self._write_some()
                if wrote is None or (self._closing and not self._out):
                    return
                if progressed or wrote:
                    continue
                writers = [self._sock] if self._out else []
                try:
                    select.select([self._sock, self._wake_r], writers, [], 0.1)
                except (OSError, ValueError):
                    return
                with contextlib.suppress(OSError):
                    self._wake_r.recv(4096)
        finally:
            with self._cond:
                for stream in self._streams.values():
                    stream.closed = True
                self._cond.notify_all()
            self._wake_r.close()
            self._wake_w.close()
            with contextlib.suppress(OSError):
                self._sock.setblocking(True)

    def _read(self) -> bool:
        """Feed what TLS has now to h2; True if anything arrived."""
        got = False
        while True:
            try:
                data = self._conn.recv(65536)
            except (SSL.WantReadError, SSL.WantWriteError):
                return got
            except (SSL.ZeroReturnError, SSL.SysCallError, SSL.Error, OSError):
                data = b""
            if not data:
                self._closing = True
                return True
            got = True
            try:
                events = self._h2.receive_data(data)
            except h2.exceptions.ProtocolError as e:
                # h2 has queued GOAWAY; send it and end the connection.
                log.debug("HTTP/2 connection from %s broke the protocol: %s", self._name, e)
                self._closing = True
                return True
            for event in events:
                self._on_event(event)

    def _on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            assert event.stream_id is not None and event.headers is not None
            if self._goaway_last is not None and event.stream_id > self._goaway_last:
                return  # after our GOAWAY, a new stream is ignored, never answered
            self._max_client_stream = max(self._max_client_stream, event.stream_id)
            request = parse_request(list(event.headers))
            if request is None:
                self._h2.reset_stream(event.stream_id, ErrorCodes.PROTOCOL_ERROR)
                return
            self._streams[event.stream_id] = _Stream(event.stream_id, request)
        elif isinstance(event, h2.events.DataReceived):
            assert event.stream_id is not None and event.data is not None
            self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            stream = self._streams.get(event.stream_id)
            if stream is None:
                return
            stream.body += event.data
            if len(stream.body) > http11.MAX_BODY_BYTES:
                # Go's server would let the handler refuse it; nothing here wants such bodies.
                self._h2.reset_stream(event.stream_id, ErrorCodes.REFUSED_STREAM)
                del self._streams[event.stream_id]
        elif isinstance(event, h2.events.TrailersReceived):
            assert event.stream_id is not None and event.headers is not None
            stream = self._streams.get(event.stream_id)
            if stream is not None and stream.request is not None:
                stream.request.trailers += [(_decode(n), _decode(v)) for n, v in event.headers]
        elif isinstance(event, h2.events.StreamEnded):
            assert event.stream_id is not None
            stream = self._streams.get(event.stream_id)
            if stream is not None and stream.request is not None:
                self._start_handler(stream)
        elif isinstance(event, h2.events.StreamReset):
            assert event.stream_id is not None
            with self._cond:
                stream = self._streams.pop(event.stream_id, None)
                if stream is not None:
                    stream.closed = True
                    self._cond.notify_all()
        elif isinstance(event, h2.events.ConnectionTerminated):
            # The client's GOAWAY: Go answers with its own and shuts down gracefully.
            with self._cond:
                self._goaway_wanted = True

    def shutdown(self) -> None:
        """Graceful shutdown (any thread): GOAWAY, finish the open streams, then close."""
        with self._cond:
            self._goaway_wanted = True
        self._wake()

    def _send_goaway(self) -> None:
        """GOAWAY(NO_ERROR, highest client stream so far), ahead of anything queued.

        Written as a raw frame: h2's close_connection would close its state machine, and the
        streams up to that id still have to be answered."""
        if self._goaway_last is not None:
            return
        self._goaway_last = self._max_client_stream
        frame = GoAwayFrame(0, last_stream_id=self._goaway_last, error_code=ErrorCodes.NO_ERROR)
        self._out += self._h2.data_to_send() + frame.serialize()
        log.debug("HTTP/2 GOAWAY to %s, last stream %d", self._name, self._goaway_last)

    def _after_goaway(self) -> None:
        """The timers: the idle GOAWAY, and the close once no stream is open after GOAWAY."""
        now = time.monotonic()
        if self._streams:
            self._idle_since, self._close_at = now, None
            return
        if self._goaway_last is None:
            if now - self._idle_since >= self._idle_timeout:
                with self._cond:
                    self._send_goaway()
            return
        if self._close_at is None:
            self._close_at = now + GOAWAY_TIMEOUT
        elif now >= self._close_at:
            self._closing = True

    def _start_handler(self, stream: _Stream) -> None:
        assert stream.request is not None
        request, stream.request = stream.request, None
        request.body = bytes(stream.body)
        stream.body = bytearray()
        threading.Thread(
            target=self._run_handler,
            args=(stream, request),
            name=f"emulator-h2-{self._name}-{stream.id}",
            daemon=True,
        ).start()

    def _pump(self) -> None:
        """Hand the handlers' output to h2, within the flow-control windows (lock held)."""
        for stream in list(self._streams.values()):
            try:
                self._pump_stream(stream)
            except h2.exceptions.StreamClosedError:
                stream.closed = True
            if stream.closed:
                del self._streams[stream.id]

    def _pump_stream(self, stream: _Stream) -> None:
        if stream.reset is not None:
            self._h2.reset_stream(stream.id, stream.reset)
            stream.closed = True
            return
        if stream.head is not None:
            if stream.goaway:
                self._send_goaway()
            finished = stream.ended and not stream.pending
            self._h2.send_headers(
                stream.id,
                [
                    (n.encode("latin-1"), v.encode("utf-8", "surrogateescape"))
                    for n, v in stream.head
                ],
                end_stream=finished,
            )
            stream.head, stream.head_sent, stream.closed = None, True, finished
        if not stream.head_sent or stream.closed:
            return
        while stream.pending and len(self._out) < OUTPUT_HIGH_WATER:
            window = min(
                self._h2.local_flow_control_window(stream.id), self._h2.max_outbound_frame_size
            )
            if window <= 0:
                return
            piece = stream.pending[0][:window]
            self._h2.send_data(stream.id, piece.tobytes())
            self._out += self._h2.data_to_send()
            stream.pending_bytes -= len(piece)
            if len(piece) == len(stream.pending[0]):
                stream.pending.popleft()
            else:
                stream.pending[0] = stream.pending[0][len(piece) :]
        if stream.ended and not stream.pending:
            self._h2.end_stream(stream.id)
            stream.closed = True

    def _write_some(self) -> bool | None:
        """Write what the socket takes now: True if anything went out, None if it broke."""
        wrote = False
        while self._out:
            try:
                n = self._conn.send(bytes(self._out[:65536]))
            except (SSL.WantWriteError, SSL.WantReadError):
                return wrote
            except (SSL.Error, OSError):
                return None
            del self._out[:n]
            wrote = True
        return wrote

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    # -- handler threads ----------------------------------------------------------------------

    def _run_handler(self, stream: _Stream, request: Request) -> None:
        try:
            response = self._handle(request)
            delay = self._delay()
            if delay and self._stopping.wait(delay):
                return
            if response.hijack is not None:
                # Only an upgrade hijacks, and an upgrade cannot reach a handler over HTTP/2.
                raise RuntimeError("http2: a handler hijacked an HTTP/2 stream")
            self._respond(stream, request, response)
        except Exception:
            log.exception("HTTP/2 stream %d from %s failed", stream.id, self._name)
            with self._cond:
                if not stream.closed:
                    stream.reset = ErrorCodes.INTERNAL_ERROR
            self._wake()

    def _respond(self, stream: _Stream, request: Request, response: Response) -> None:
        head_only = request.method == "HEAD"
        body = response.body
        known = response.stream is None and len(body) <= HANDLER_CHUNK_WRITE_SIZE
        with self._cond:
            stream.head = response_headers(response, len(body) if known else None)
            stream.goaway = asks_for_goaway(response)
        if not head_only and not self._send(stream, body):
            return
        for item in response.stream or ():
            if isinstance(item, Hold):
                if not self._hold(stream, item.seconds):
                    return
            elif not head_only and not self._send(stream, item):
                return
        with self._cond:
            stream.ended = True
        self._wake()

    def _send(self, stream: _Stream, data: bytes) -> bool:
        """Queue data on the stream; wait while too much is unsent. False once it is closed."""
        with self._cond:
            if stream.closed:
                return False
            if data:
                stream.pending.append(memoryview(data))
                stream.pending_bytes += len(data)
        self._wake()
        with self._cond:
            while stream.pending_bytes > HIGH_WATER and not stream.closed:
                self._cond.wait(0.5)
            return not stream.closed

    def _hold(self, stream: _Stream, seconds: float | None) -> bool:
        """Keep the stream open: True when the time is up, False when it or the server ended."""
        deadline = None if seconds is None else time.monotonic() + seconds
        with self._cond:
            while not stream.closed and not self._stopping.is_set():
                remaining = 0.1 if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    return True
                self._cond.wait(min(remaining, 0.1))
        return False
