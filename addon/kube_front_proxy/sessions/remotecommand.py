"""Which bytes of an exec or attach session are stdin, stdout, stderr and terminal sizes.

The Kubernetes remotecommand protocol, read (never answered) from the bytes the proxy relays:

- **WebSocket** (`k8s.io/apimachinery pkg/util/httpstream/wsstream/conn.go`; the client side in
  `k8s.io/client-go tools/remotecommand/websocket.go`): every message starts with its channel,
  a byte for `channel.k8s.io`, `v4.channel.k8s.io` and `v5.channel.k8s.io`; for the base64
  variants (`base64.channel.k8s.io`, `v4.base64.channel.k8s.io`) the digit '0'..'4' and then
  the payload in standard base64, in a text message. Channels (`k8s.io/apimachinery
  pkg/util/remotecommand/constants.go`): 0 stdin, 1 stdout, 2 stderr, 3 error (a Status at the
  end), 4 resize; v5 adds 255, "close channel N", from the client.
- **SPDY/3.1** (`k8s.io/apimachinery pkg/util/httpstream/spdy`, `k8s.io/client-go
  tools/remotecommand/v2.go`, `v3.go`, `v4.go`): the client opens one stream per channel, named
  by its `streamType` header (`stdin`, `stdout`, `stderr`, `error`, `resize`); the data frames
  of a stream are that channel's bytes (`sessions/spdy_frames.py` reads the frames).
- **resize** carries `TerminalSize` objects as JSON, `{"Width":W,"Height":H}`, each written with a
  `json.Encoder` (`tools/remotecommand/resize.go`): one after the other, possibly split across
  frames.

Each decoder hands back `(channel, bytes)` pieces with the direction they came from; a piece
on a channel that direction does not write (stdout from the client) is not reported.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from enum import IntEnum

from kube_front_proxy.sessions.spdy_frames import FrameReader, StreamData, StreamOpened


class Channel(IntEnum):
    STDIN = 0
    STDOUT = 1
    STDERR = 2
    ERROR = 3
    RESIZE = 4


# v5.channel.k8s.io: [255, N] from the client closes channel N.
CLOSE_SIGNAL = 255
_FROM_CLIENT = frozenset({Channel.STDIN, Channel.RESIZE})
_SPDY_STREAM_TYPES = {channel.name.lower(): channel for channel in Channel}
# kubectl opens five streams; more than this from one client are not followed.
_MAX_SPDY_STREAMS = 64
# A TerminalSize is about 30 bytes of JSON; a resize stream that never finishes one is dropped.
_MAX_SIZE_TEXT = 1024

Piece = tuple[Channel, bytes]


def _from_right_side(channel: Channel, from_client: bool) -> bool:
    return (channel in _FROM_CLIENT) == from_client


def is_base64_protocol(subprotocol: str) -> bool:
    return subprotocol.endswith("base64.channel.k8s.io")


class WebSocketChannels:
    """One WebSocket exec or attach session: its messages, one by one, as channel pieces."""

    def __init__(self, subprotocol: str) -> None:
        self.base64 = is_base64_protocol(subprotocol)

    def message(self, content: bytes, from_client: bool) -> Piece | None:
        """The channel and payload of one message; None for an empty one, a close signal, an
        unknown channel or bad base64 (which the API server refuses too)."""
        if not content or content[0] == CLOSE_SIGNAL:
            return None
        number = content[0] - ord("0") if self.base64 else content[0]
        if number not in Channel._value2member_map_:
            return None
        channel = Channel(number)
        if not _from_right_side(channel, from_client):
            return None
        payload = content[1:]
        if self.base64:
            try:
                payload = base64.b64decode(payload, validate=True)
            except binascii.Error:
                return None
        return channel, payload


class SpdyChannels:
    """One SPDY exec or attach session: each direction's reads, as channel pieces."""

    def __init__(self) -> None:
        # The client opens every stream (its headers are read); the API server's header
        # blocks (empty SYN_REPLYs) are skipped.
        self._client = FrameReader(headers=True)
        self._server = FrameReader(headers=False)
        self._streams: dict[int, Channel] = {}

    def data(self, data: bytes, from_client: bool) -> Iterator[Piece]:
        """The pieces of one read; raises spdy_frames.SpdyError when it is not SPDY/3."""
        reader = self._client if from_client else self._server
        for event in reader.feed(data):
            if isinstance(event, StreamData):
                channel = self._streams.get(event.stream_id)
                if channel is not None and _from_right_side(channel, from_client):
                    yield channel, event.data
            elif isinstance(event, StreamOpened) and len(self._streams) < _MAX_SPDY_STREAMS:
                kind = _SPDY_STREAM_TYPES.get(event.headers.get("streamtype", ""))
                if kind is not None:
                    self._streams[event.stream_id] = kind


class TerminalSizes:
    """The resize channel's JSON objects, as they arrive: (width, height) of each."""

    def __init__(self) -> None:
        self._text = ""
        self._decoder = json.JSONDecoder()

    def feed(self, data: bytes) -> list[tuple[int, int]]:
        self._text += data.decode("utf-8", "replace")
        sizes: list[tuple[int, int]] = []
        while True:
            text = self._text.lstrip()
            try:
                size, end = self._decoder.raw_decode(text)
            except ValueError:
                self._text = text if len(text) <= _MAX_SIZE_TEXT else ""
                return sizes
            self._text = text[end:]
            width, height = _dimension(size, "Width"), _dimension(size, "Height")
            if width and height:
                sizes.append((width, height))


def _dimension(size: object, key: str) -> int:
    """A uint16 of TerminalSize, 0 if it is not one."""
    value = size.get(key) if isinstance(size, dict) else None
    return value if type(value) is int and 0 < value < 1 << 16 else 0
