"""SPDY/3.1 as Kubernetes speaks it: framing, header compression and the server half of a session.

Kubernetes uses SPDY only as a stream multiplexer under exec, attach and port-forward
(`k8s.io/apimachinery pkg/util/httpstream/spdy`, now `k8s.io/streaming`), through
`github.com/moby/spdystream`. What this module follows, from spdystream:

- `spdy/types.go`, `read.go`, `write.go`: frame layouts (SPDY/3 draft, section 2). Control frames
  start with the bit set and version 3, data frames with a 31-bit stream id; both carry 8 flag bits
  and a 24-bit length. Header blocks are a 32-bit pair count, then 32-bit length-prefixed names
  (lower case) and values (several values joined by NUL), zlib-compressed with one stream per
  direction for the whole connection, the SPDY/3 dictionary preset, and a sync flush after each
  block. The reader insists that each frame's compressed bytes are consumed exactly.
- `connection.go`, `stream.go`: the server uses even stream ids and the client odd ones; a
  SYN_STREAM is answered by SYN_REPLY (kubelet and apiserver reply with no headers,
  `httpstream/spdy/connection.go` `newSpdyStream`); FIN on a DATA frame is a half-close; RST_STREAM
  ends a stream both ways; a PING from the peer (odd id from a client) is echoed; GOAWAY ends the
  session. spdystream implements no flow control: SETTINGS and WINDOW_UPDATE are read and ignored,
  and so they are here.
"""

from __future__ import annotations

import enum
import struct
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from kube_front_proxy.sessions import spdy_frames

from .pipe import Pipe
from .tunnel import Transport

VERSION = 3
MAX_DATA = (1 << 24) - 1
WRITE_CHUNK = 32 * 1024

# The SPDY/3 header compression dictionary is the proxy's (it reads SPDY sessions for their
# recordings): one copy of the 1423 bytes, checked against real kubectl by the SPDY tests.
DICTIONARY = spdy_frames.DICTIONARY


class FrameType(enum.IntEnum):
    SYN_STREAM = 1
    SYN_REPLY = 2
    RST_STREAM = 3
    SETTINGS = 4
    PING = 6
    GOAWAY = 7
    HEADERS = 8
    WINDOW_UPDATE = 9


FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02


class RstStatus(enum.IntEnum):
    PROTOCOL_ERROR = 1
    INVALID_STREAM = 2
    REFUSED_STREAM = 3
    UNSUPPORTED_VERSION = 4
    CANCEL = 5
    INTERNAL_ERROR = 6


class ProtocolError(Exception):
    """The peer broke the framing; the session is over."""


Headers = list[tuple[str, str]]


def header_get(headers: Sequence[tuple[str, str]], name: str) -> str:
    """`http.Header.Get`: the first value, "" when absent (names are lower case on the wire)."""
    folded = name.lower()
    return next((v for n, v in headers if n == folded), "")


# -- header blocks ---------------------------------------------------------------------------


def encode_header_block(headers: Sequence[tuple[str, str]]) -> bytes:
    """`writeHeaderValueBlock`: names lower-cased, repeated names joined with NUL."""
    grouped: dict[str, list[str]] = {}
    for name, value in headers:
        grouped.setdefault(name.lower(), []).append(value)
    out = [struct.pack("!I", len(grouped))]
    for name, values in grouped.items():
        n, v = name.encode("utf-8"), "\0".join(values).encode("utf-8")
        out += [struct.pack("!I", len(n)), n, struct.pack("!I", len(v)), v]
    return b"".join(out)


def decode_header_block(block: bytes) -> Headers:
    """`parseHeaderValueBlock`, strict: upper-case or repeated names are protocol errors."""
    try:
        (count,) = struct.unpack_from("!I", block, 0)
        offset = 4
        headers: Headers = []
        seen: set[str] = set()
        for _ in range(count):
            (n,) = struct.unpack_from("!I", block, offset)
            name = block[offset + 4 : offset + 4 + n].decode("utf-8")
            offset += 4 + n
            (m,) = struct.unpack_from("!I", block, offset)
            value = block[offset + 4 : offset + 4 + m].decode("utf-8")
            offset += 4 + m
            if offset > len(block):
                raise ProtocolError("truncated header block")
            if name != name.lower() or name in seen:
                raise ProtocolError(f"bad header name {name!r}")
            seen.add(name)
            headers += [(name, v) for v in value.split("\0")]
    except (struct.error, UnicodeDecodeError) as e:
        raise ProtocolError(f"bad header block: {e}") from None
    if offset != len(block):
        raise ProtocolError("trailing bytes after the header block")
    return headers


class HeaderCompressor:
    """One direction's zlib stream (`zlib.NewWriterLevelDict(..., BestCompression, dict)`)."""

    def __init__(self) -> None:
        self._z = zlib.compressobj(zlib.Z_BEST_COMPRESSION, zlib.DEFLATED, 15, 9, zdict=DICTIONARY)

    def compress(self, headers: Sequence[tuple[str, str]]) -> bytes:
        block = encode_header_block(headers)
        return self._z.compress(block) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    def __init__(self) -> None:
        self._z = zlib.decompressobj(zdict=DICTIONARY)

    def decompress(self, data: bytes) -> Headers:
        try:
            block = self._z.decompress(data)
        except zlib.error as e:
            raise ProtocolError(f"header decompression: {e}") from None
        if self._z.unused_data:
            raise ProtocolError("compressed payload size was incorrect")
        return decode_header_block(block)


# -- frames ------------------------------------------------------------------------------------


def control_frame(kind: FrameType, flags: int, payload: bytes) -> bytes:
    return struct.pack("!HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload


def data_frame(stream_id: int, flags: int, data: bytes) -> bytes:
    return struct.pack("!II", stream_id & 0x7FFFFFFF, (flags << 24) | len(data)) + data


@dataclass(frozen=True)
class RawFrame:
    control: bool
    kind: int  # FrameType for control frames, the stream id for data frames
    flags: int
    payload: bytes


class FrameReader:
    """Splits a byte stream into frames (`Framer.ReadFrame`)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[RawFrame]:
        self._buffer += data
        frames: list[RawFrame] = []
        while len(self._buffer) >= 8:
            first, second = struct.unpack_from("!II", self._buffer, 0)
            length = second & 0xFFFFFF
            if len(self._buffer) < 8 + length:
                break
            payload = bytes(self._buffer[8 : 8 + length])
            del self._buffer[: 8 + length]
            if first & 0x80000000:
                version = (first >> 16) & 0x7FFF
                if version != VERSION:
                    raise ProtocolError(f"unsupported SPDY version {version}")
                frames.append(RawFrame(True, first & 0xFFFF, second >> 24, payload))
            else:
                frames.append(RawFrame(False, first & 0x7FFFFFFF, second >> 24, payload))
        return frames


# -- the session -------------------------------------------------------------------------------


@dataclass(eq=False)
class Stream:
    """One SPDY stream as the server sees it: read what the client sent, write back."""

    session: Session
    id: int
    headers: Headers
    priority: int
    inbound: Pipe = field(default_factory=Pipe)
    finished: bool = False  # we sent FIN or RST
    remote_closed: bool = False  # the client sent FIN or RST

    def header(self, name: str) -> str:
        return header_get(self.headers, name)

    def read(self, n: int = 65536) -> bytes:
        """Up to n bytes; b"" once the client half-closed or reset the stream."""
        return self.inbound.read(n)

    def write(self, data: bytes) -> None:
        for i in range(0, len(data), WRITE_CHUNK):
            self.session.send_data(self, data[i : i + WRITE_CHUNK], fin=False)

    def close(self) -> None:
        """Half-close: an empty DATA frame with FIN (`Stream.Close`)."""
        self.session.send_data(self, b"", fin=True)

    def reset(self) -> None:
        """RST_STREAM CANCEL (`Stream.Reset`), unless already finished."""
        self.session.reset(self, RstStatus.CANCEL)


class Session:
    """The server half of a spdystream connection (`NewConnection(conn, server=true)`).

    `on_stream` runs on the transport's thread for each new stream and must not block; it
    returns False to refuse the stream (RST_STREAM, like a handler error in `newSpdyStream`),
    True to accept it (SYN_REPLY with no headers). `on_open` then runs, once the reply is queued:
    a client drops DATA for a stream it has no reply for yet, so nothing may be written before.
    `on_close` runs once when the peer is gone.
    """

    def __init__(
        self,
        transport: Transport,
        on_stream: Callable[[Stream], bool],
        on_close: Callable[[], None] = lambda: None,
        on_open: Callable[[Stream], None] = lambda _stream: None,
    ) -> None:
        self._transport = transport
        self._on_stream = on_stream
        self._on_close = on_close
        self._on_open = on_open
        self._reader = FrameReader()
        self._inflate = HeaderDecompressor()
        self._deflate = HeaderCompressor()
        # Header compression is stateful, so frames must reach the wire in the order their
        # blocks were compressed: one lock covers compressing and queueing.
        self._write_lock = threading.Lock()
        self._streams: dict[int, Stream] = {}
        self._last_client_stream = 0
        self._gone_away = False
        self.closed = threading.Event()
        self.pings_answered = 0

    # Receiver (transport thread)

    def data_received(self, data: bytes) -> None:
        if self.closed.is_set():
            return
        try:
            for frame in self._reader.feed(data):
                self._handle(frame)
        except (ProtocolError, struct.error):  # struct.error: a frame shorter than its type
            self.goaway(status=1)
            self._finish()

    def eof_received(self) -> None:
        self._finish()

    def _finish(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for stream in list(self._streams.values()):
            stream.remote_closed = True
            stream.inbound.close()
        self._transport.close()
        self._on_close()

    def _handle(self, frame: RawFrame) -> None:
        if not frame.control:
            self._handle_data(frame.kind, frame.flags, frame.payload)
            return
        p = frame.payload
        if frame.kind == FrameType.SYN_STREAM:
            stream_id, _assoc, prio = struct.unpack_from("!IIB", p, 0)
            headers = self._inflate.decompress(p[10:])
            self._handle_syn_stream(stream_id & 0x7FFFFFFF, prio >> 5, frame.flags, headers)
        elif frame.kind in (FrameType.SYN_REPLY, FrameType.HEADERS):
            # Clients never reply to us (we open no streams); the block must still be inflated
            # to keep the shared zlib stream in step.
            self._inflate.decompress(p[4:])
        elif frame.kind == FrameType.RST_STREAM:
            (stream_id,) = struct.unpack_from("!I", p, 0)
            stream = self._streams.pop(stream_id & 0x7FFFFFFF, None)
            if stream is not None:
                stream.remote_closed = stream.finished = True
                stream.inbound.close()
        elif frame.kind == FrameType.PING:
            (ping_id,) = struct.unpack_from("!I", p, 0)
            if ping_id & 1:  # the client's parity: echo it (`handlePingFrame`)
                with self._write_lock:
                    self._transport.send(control_frame(FrameType.PING, 0, p[:4]))
                self.pings_answered += 1
        elif frame.kind == FrameType.GOAWAY:
            self._gone_away = True
        # SETTINGS, WINDOW_UPDATE and unknown types: ignored, as spdystream does.

    def _handle_syn_stream(self, stream_id: int, prio: int, flags: int, headers: Headers) -> None:
        # `validateStreamId`: client ids are odd and increasing.
        if self._gone_away or stream_id % 2 == 0 or stream_id <= self._last_client_stream:
            self._send_rst(stream_id, RstStatus.PROTOCOL_ERROR)
            return
        self._last_client_stream = stream_id
        stream = Stream(self, stream_id, headers, prio)
        if flags & FLAG_FIN:
            stream.remote_closed = True
            stream.inbound.close()
        if flags & FLAG_UNIDIRECTIONAL:
            stream.finished = True
        if not self._on_stream(stream):
            self._send_rst(stream_id, RstStatus.CANCEL)
            return
        self._streams[stream_id] = stream
        with self._write_lock:
            block = self._deflate.compress([])
            self._transport.send(
                control_frame(FrameType.SYN_REPLY, 0, struct.pack("!I", stream_id) + block)
            )
        self._on_open(stream)

    def _handle_data(self, stream_id: int, flags: int, data: bytes) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            return  # data for a stream that is gone: dropped, as spdystream does
        if data:
            stream.inbound.write(data)
        if flags & FLAG_FIN:
            stream.remote_closed = True
            stream.inbound.close()

    # writing (any thread)

    def send_data(self, stream: Stream, data: bytes, *, fin: bool) -> None:
        with self._write_lock:
            if stream.finished:
                return
            if fin:
                stream.finished = True
            self._transport.send(data_frame(stream.id, FLAG_FIN if fin else 0, data))

    def reset(self, stream: Stream, status: RstStatus) -> None:
        with self._write_lock:
            if stream.finished:
                return
            stream.finished = True
        self._send_rst(stream.id, status)

    def _send_rst(self, stream_id: int, status: RstStatus) -> None:
        with self._write_lock:
            self._transport.send(
                control_frame(FrameType.RST_STREAM, 0, struct.pack("!II", stream_id, status))
            )

    def goaway(self, status: int = 0) -> None:
        """GOAWAY naming the last stream accepted (`Connection.Close`)."""
        with self._write_lock:
            self._transport.send(
                control_frame(
                    FrameType.GOAWAY, 0, struct.pack("!II", self._last_client_stream, status)
                )
            )


# -- the client side (tests) -------------------------------------------------------------------


class ClientCodec:
    """Enough of a client to open streams and read the answers, for tests."""

    def __init__(self) -> None:
        self.deflate = HeaderCompressor()
        self.inflate = HeaderDecompressor()
        self.reader = FrameReader()

    def syn_stream(self, stream_id: int, headers: Sequence[tuple[str, str]], fin: bool) -> bytes:
        block = self.deflate.compress(headers)
        payload = struct.pack("!IIBB", stream_id, 0, 0, 0) + block
        return control_frame(FrameType.SYN_STREAM, FLAG_FIN if fin else 0, payload)
