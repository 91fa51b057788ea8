"""WebSocket (RFC 6455) framing and handshakes, both roles, without I/O.

The server side answers the way kube-apiserver's two WebSocket libraries do:

- exec/attach go through `wsstream.Conn` (`k8s.io/apimachinery pkg/util/httpstream/wsstream/
  conn.go` before the move to k8s.io/streaming), built on `golang.org/x/net/websocket`: its
  hybi handshake writes `Upgrade`, `Connection`, `Sec-WebSocket-Accept`, `Sec-WebSocket-Protocol`
  in that order and nothing else; a refused subprotocol is a bare `403 Forbidden` status line
  and a malformed handshake a bare `400 Bad Request`, then the connection is closed.
- port-forward tunnels use gorilla's `Upgrader` (`k8s.io/apiserver pkg/util/proxy/
  streamtunnel.go`), whose 101 has the same four headers.

Client frames must be masked and server frames must not be (RFC 6455 5.1, 5.3); control frames
carry at most 125 bytes and are never fragmented (5.5). The client half is for tests.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import os
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .requestheader import Header
from .tunnel import Transport

# RFC 6455 1.3: the GUID appended to Sec-WebSocket-Key before hashing.
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
# golang.org/x/net/websocket DefaultMaxPayloadBytes: the largest frame wsstream reads.
MAX_MESSAGE = 32 << 20


class Opcode(enum.IntEnum):
    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


class ProtocolError(Exception):
    """The peer broke RFC 6455; the connection is failed with close code 1002."""


def accept_key(key: str) -> str:
    """`Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 4.2.2 step 5.4)."""
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def _tokens(headers: Sequence[Header], name: str) -> list[str]:
    folded = name.lower()
    return [t.strip() for n, v in headers if n.lower() == folded for t in v.split(",") if t.strip()]


def is_websocket_request(headers: Sequence[Header]) -> bool:
    """`wsstream.IsWebSocketRequest`: `Upgrade: websocket` and a Connection header that
    mentions upgrade (`httpstream.IsUpgradeRequest`)."""
    upgrade = next((v for n, v in headers if n.lower() == "upgrade"), "")
    if upgrade.lower() != "websocket":
        return False
    return any(n.lower() == "connection" and "upgrade" in v.lower() for n, v in headers)


def subprotocols(headers: Sequence[Header]) -> list[str]:
    """The offered subprotocols, in the client's order (gorilla's `Subprotocols`)."""
    return _tokens(headers, "Sec-WebSocket-Protocol")


def handshake_problem(method: str, headers: Sequence[Header]) -> str | None:
    """Why a server refuses this opening handshake (RFC 6455 4.2.1), or None."""
    if method != "GET":
        return "method not GET"
    if "upgrade" not in [t.lower() for t in _tokens(headers, "Connection")]:
        return "'upgrade' token not found in 'Connection' header"
    if "websocket" not in [t.lower() for t in _tokens(headers, "Upgrade")]:
        return "'websocket' token not found in 'Upgrade' header"
    versions = [v for n, v in headers if n.lower() == "sec-websocket-version"]
    if versions != ["13"]:
        return "unsupported version: 13 not found in 'Sec-Websocket-Version' header"
    keys = [v for n, v in headers if n.lower() == "sec-websocket-key"]
    try:
        valid_key = len(keys) == 1 and len(base64.b64decode(keys[0], validate=True)) == 16
    except ValueError:
        valid_key = False
    if not valid_key:
        return "websocket: not a websocket handshake: 'Sec-WebSocket-Key' header is missing"
    return None


def switching_protocols(key: str, protocol: str | None) -> bytes:
    """The 101 both Go libraries write (no Date, no other header)."""
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(key)}",
    ]
    if protocol:
        lines.append(f"Sec-WebSocket-Protocol: {protocol}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def bare_refusal(code: int) -> bytes:
    """x/net/websocket's refusal: a status line and an empty header block, no body."""
    phrase = {400: "Bad Request", 403: "Forbidden"}[code]
    return f"HTTP/1.1 {code} {phrase}\r\n\r\n".encode("latin-1")


# -- frames -------------------------------------------------------------------------------------


def encode_frame(
    opcode: Opcode, payload: bytes = b"", *, fin: bool = True, mask: bytes | None = None
) -> bytes:
    """One frame; servers pass no mask, clients a fresh 4-byte key (RFC 6455 5.2, 5.3)."""
    first = (0x80 if fin else 0) | int(opcode)
    mask_bit = 0x80 if mask is not None else 0
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", first, mask_bit | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, n)
    if mask is None:
        return head + payload
    return head + mask + _unmask(payload, mask)


def _unmask(data: bytes, key: bytes) -> bytes:
    if not data:
        return data
    # XOR with the key repeated; done on one big integer, which is fast in CPython.
    repeated = (key * (len(data) // 4 + 1))[: len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        len(data), "big"
    )


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode("utf-8")


@dataclass(frozen=True)
class Message:
    """A complete data message (fragments joined)."""

    opcode: Opcode
    data: bytes


@dataclass(frozen=True)
class Control:
    """A ping, pong or close frame."""

    opcode: Opcode
    payload: bytes

    @property
    def close_code(self) -> int | None:
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None


Event = Message | Control


class FrameParser:
    """Incremental frame parser for one direction of a connection.

    `from_client=True` parses what a server receives (frames must be masked); False, what a
    client receives (frames must not be).
    """

    def __init__(self, *, from_client: bool) -> None:
        self._from_client = from_client
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._fragment_opcode: Opcode | None = None

    def feed(self, data: bytes) -> list[Event]:
        self._buffer += data
        events: list[Event] = []
        while True:
            event = self._next()
            if event is None:
                return events
            if not isinstance(event, _Partial):
                events.append(event)

    def _next(self) -> Event | _Partial | None:
        buf = self._buffer
        if len(buf) < 2:
            return None
        fin, rsv, opcode_value = buf[0] & 0x80, buf[0] & 0x70, buf[0] & 0x0F
        masked, length = buf[1] & 0x80, buf[1] & 0x7F
        offset = 2
        if length == 126:
            if len(buf) < 4:
                return None
            length = struct.unpack_from("!H", buf, 2)[0]
            offset = 4
        elif length == 127:
            if len(buf) < 10:
                return None
            length = struct.unpack_from("!Q", buf, 2)[0]
            offset = 10
        if rsv:
            raise ProtocolError("RSV bits set without a negotiated extension")
        if bool(masked) != self._from_client:
            raise ProtocolError("client frames must be masked, server frames must not")
        if length > MAX_MESSAGE:
            raise ProtocolError("frame too large")
        key = b""
        if masked:
            if len(buf) < offset + 4:
                return None
            key = bytes(buf[offset : offset + 4])
            offset += 4
        if len(buf) < offset + length:
            return None
        payload = bytes(buf[offset : offset + length])
        del buf[: offset + length]
        if masked:
            payload = _unmask(payload, key)
        try:
            opcode = Opcode(opcode_value)
        except ValueError:
            raise ProtocolError(f"unknown opcode {opcode_value}") from None
        if opcode >= Opcode.CLOSE:
            if not fin or length > 125:
                raise ProtocolError("control frames are short and never fragmented")
            return Control(opcode, payload)
        if opcode == Opcode.CONTINUATION:
            if self._fragment_opcode is None:
                raise ProtocolError("continuation without a message")
        elif self._fragment_opcode is not None:
            raise ProtocolError("new message inside a fragmented one")
        else:
            self._fragment_opcode = opcode
        self._fragments.append(payload)
        if sum(len(f) for f in self._fragments) > MAX_MESSAGE:
            raise ProtocolError("message too large")
        if not fin:
            return _Partial()
        message = Message(self._fragment_opcode, b"".join(self._fragments))
        self._fragments, self._fragment_opcode = [], None
        return message


class _Partial:
    """A fragment was consumed; the message is not complete yet."""


# -- a server-side connection ----------------------------------------------------------------


class ServerConnection:
    """The server end of an open WebSocket on a transport.

    Answers pings with pongs, echoes the peer's close frame (RFC 6455 5.5.1) and then lets the
    transport close; data messages go to `on_message`, and `on_close` runs once, whichever way
    the connection ends.
    """

    def __init__(
        self,
        transport: Transport,
        on_message: Callable[[Message], None],
        on_close: Callable[[], None],
        *,
        linger: float = 5.0,
    ) -> None:
        self._transport = transport
        self._on_message = on_message
        self._on_close = on_close
        self._linger = linger
        self._parser = FrameParser(from_client=True)
        self._close_sent = False
        self._closed = False
        self.close_code: int | None = None  # the peer's, once it sent one

    # Receiver

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        try:
            events = self._parser.feed(data)
        except ProtocolError:
            self.close(CLOSE_PROTOCOL_ERROR)
            self._finish(linger=0.0)
            return
        for event in events:
            if isinstance(event, Message):
                self._on_message(event)
            elif event.opcode == Opcode.PING:
                self._transport.send(encode_frame(Opcode.PONG, event.payload))
            elif event.opcode == Opcode.CLOSE:
                self.close_code = event.close_code
                self.close(event.close_code or CLOSE_NORMAL)
                self._finish(linger=0.0)
                return

    def eof_received(self) -> None:
        self._finish(linger=0.0)

    # sending

    def send(self, data: bytes, opcode: Opcode = Opcode.BINARY) -> None:
        if not self._close_sent:
            self._transport.send(encode_frame(opcode, data))

    def close(self, code: int = CLOSE_NORMAL) -> None:
        """Send the close frame (once) and wait, for a while, for the peer's."""
        if self._close_sent:
            return
        self._close_sent = True
        self._transport.send(encode_frame(Opcode.CLOSE, close_payload(code)))
        self._transport.close(linger=self._linger)

    def _finish(self, *, linger: float) -> None:
        if self._closed:
            return
        self._closed = True
        self._transport.close(linger=linger)
        self._on_close()


# -- the client side (tests) -------------------------------------------------------------------


def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode("ascii")


def client_request(
    method: str, path: str, host: str, key: str, extra: Iterable[Header] = ()
) -> bytes:
    """An opening handshake as gorilla's Dialer sends it, with extra header lines."""
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{n}: {v}" for n, v in extra),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def client_frame(opcode: Opcode, payload: bytes = b"") -> bytes:
    return encode_frame(opcode, payload, mask=os.urandom(4))
