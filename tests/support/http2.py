"""A small blocking HTTP/2 client (the `h2` library over `ssl`) for tests: many streams on one
connection, partial reads of never-ending responses, and RST_STREAM."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.errors
import h2.events
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame


@dataclass
class H2Response:
    headers: list[tuple[str, str]] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None  # the server's RST_STREAM error code

    @property
    def status(self) -> int:
        return int(self.header(":status") or 0)

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n == name), None)


class H2Client:
    """One TLS connection that must negotiate `h2`; the client's windows stay at 65,535 bytes
    (the protocol's default), so a large response exercises the server's flow control.
    `initial_window` sets SETTINGS_INITIAL_WINDOW_SIZE in the preface (0: a reader that reads
    nothing until `open_window`)."""

    def __init__(
        self,
        port: int,
        context: ssl.SSLContext,
        server_name: str = "127.0.0.1",
        source: str = "127.0.0.1",
        *,
        initial_window: int | None = None,
    ) -> None:
        context.set_alpn_protocols(["h2", "http/1.1"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
        self.sock = context.wrap_socket(raw, server_hostname=server_name)
        assert self.sock.selected_alpn_protocol() == "h2"
        self.authority = f"{server_name}:{port}"
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        # Like Go's client, it keeps receiving the streams up to a GOAWAY's last stream id (h2
        # would close its state machine and refuse their frames).
        self.conn._frame_dispatch_table[GoAwayFrame] = self._receive_goaway_frame
        if initial_window is not None:
            self.conn.local_settings.initial_window_size = initial_window
            # Acknowledged at once, so that the preface carries it (as mitmproxy does).
            self.conn.local_settings.acknowledge()
        self.conn.initiate_connection()
        self.responses: dict[int, H2Response] = {}
        self.goaway: int | None = None
        self.goaway_last_stream: int | None = None
        # Stream ids whose HEADERS had come when the GOAWAY came.
        self.answered_before_goaway: list[int] | None = None
        self.closed = False
        self.pings_acked = 0
        self._flush()

    def request(
        self,
        method: str,
        path: str,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        *,
        validate: bool = True,
        trailers: Sequence[tuple[str, str]] = (),
    ) -> int:
        """Start a request; its stream id. `validate=False` sends headers h2 would refuse.
        A body is sent within the server's flow-control windows; `trailers` end the stream
        with a second HEADERS frame after it."""
        stream_id = self.conn.get_next_available_stream_id()
        pseudo = [(":method", method), (":scheme", "https"), (":authority", self.authority),
                  (":path", path)]  # fmt: skip
        self.conn.config.validate_outbound_headers = validate
        self.conn.config.normalize_outbound_headers = validate
        self.responses[stream_id] = H2Response()
        self.conn.send_headers(stream_id, [*pseudo, *headers], end_stream=not (body or trailers))
        self._send_body(stream_id, body, end_stream=not trailers)
        if trailers:
            self.conn.send_headers(stream_id, list(trailers), end_stream=True)
        self._flush()
        return stream_id

    def _send_body(self, stream_id: int, body: bytes, end_stream: bool) -> None:
        view = memoryview(body)
        r = self.responses[stream_id]
        while view:
            window = min(self.conn.local_flow_control_window(stream_id),
                         self.conn.max_outbound_frame_size)  # fmt: skip
            if window <= 0:
                self._flush()
                self.wait(lambda: self.conn.local_flow_control_window(stream_id) > 0
                          or r.ended or r.reset is not None)  # fmt: skip
                if r.ended or r.reset is not None:
                    return  # answered (or refused) before the whole body was sent
                continue
            self.conn.send_data(stream_id, bytes(view[:window]),
                                end_stream=end_stream and len(view) <= window)  # fmt: skip
            view = view[window:]

    def open_window(self, stream_id: int, size: int) -> None:
        """Let the server send `size` more bytes on the stream (and on the connection)."""
        self.conn.increment_flow_control_window(size, stream_id)
        self.conn.increment_flow_control_window(size)
        self._flush()

    def reset(self, stream_id: int) -> None:
        self.conn.reset_stream(stream_id, ErrorCodes.CANCEL)
        self._flush()

    def ping(self, timeout: float = 30) -> None:
        """A PING, and its ACK: the server has read everything sent before it."""
        acked = self.pings_acked
        self.conn.ping(b"syncsync")
        self._flush()
        self.wait(lambda: self.pings_acked > acked, timeout)

    def wait(self, done: Callable[[], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("HTTP/2 responses did not arrive in time")
            self.sock.settimeout(remaining)
            data = self.sock.recv(1 << 20)
            if not data:
                self.closed = True
                raise AssertionError("the server closed the connection")
            for event in self.conn.receive_data(data):
                self._on_event(event)
            self._flush()

    def response(self, stream_id: int, timeout: float = 30) -> H2Response:
        """The whole response of a stream (or how it was reset), or what came of it before
        a GOAWAY that leaves it out (an error, or a last stream id below it)."""
        r = self.responses[stream_id]
        self.wait(lambda: r.ended or r.reset is not None or self.dropped(stream_id), timeout)
        return r

    def dropped(self, stream_id: int) -> bool:
        """A GOAWAY says this stream will not be answered."""
        if self.goaway is None:
            return False
        return self.goaway != ErrorCodes.NO_ERROR or stream_id > (self.goaway_last_stream or 0)

    def close(self) -> None:
        self.sock.close()

    def _on_event(self, event: h2.events.Event) -> None:
        stream_id = getattr(event, "stream_id", None)
        r = self.responses.get(stream_id) if stream_id else None
        if isinstance(event, h2.events.ResponseReceived) and r is not None:
            r.headers = [(str(n), str(v)) for n, v in event.headers or []]
        elif isinstance(event, h2.events.DataReceived):
            assert event.stream_id is not None and event.data is not None
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if r is not None:
                r.data += event.data
        elif isinstance(event, h2.events.StreamEnded) and r is not None:
            r.ended = True
        elif isinstance(event, h2.events.StreamReset) and r is not None:
            r.reset = event.error_code
        elif isinstance(event, h2.events.PingAckReceived):
            self.pings_acked += 1
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event.error_code
            self.goaway_last_stream = event.last_stream_id
            self.answered_before_goaway = [i for i, r in self.responses.items() if r.headers]

    def _receive_goaway_frame(
        self, frame: GoAwayFrame
    ) -> tuple[list[object], list[h2.events.Event]]:
        event = h2.events.ConnectionTerminated()
        event.error_code = h2.errors._error_code_from_int(frame.error_code)
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)
