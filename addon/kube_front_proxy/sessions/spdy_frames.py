"""SPDY/3.1 frames as Kubernetes sends them, read from one direction of a relayed connection.

Kubernetes uses SPDY only to multiplex streams under exec, attach and port-forward
(`k8s.io/apimachinery pkg/util/httpstream/spdy`, on `github.com/moby/spdystream`; frame layouts
in spdystream's `spdy/types.go` and `read.go`, after the SPDY/3 draft, section 2):

- a control frame: the high bit set, version 3, a 16-bit type, 8 flag bits, a 24-bit length;
  a data frame: a 31-bit stream id, 8 flag bits, a 24-bit length, then the data;
- SYN_STREAM (type 1) opens a stream: stream id, associated id, priority and slot, then a header
  block; SYN_REPLY (2) and HEADERS (8): stream id, then a header block;
- header blocks are zlib-compressed with one stream per direction for the whole connection, the
  SPDY/3 dictionary preset and a sync flush after each block; inside, a 32-bit count of pairs,
  then 32-bit length-prefixed names (lower case on the wire) and values.

The reader is fed each read as it is relayed and hands back what it learnt: streams opened, with
their headers, and pieces of data frames as they arrive (never a whole frame held: a data frame
may be 16 MiB). Only a control frame whose header block is wanted is kept, up to
`MAX_CONTROL_FRAME`, and its block is decompressed to at most `MAX_HEADER_BLOCK`.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

VERSION = 3
SYN_STREAM = 1
SYN_REPLY = 2
HEADERS = 8
# A header block kubectl sends is a few dozen bytes; this bounds what a peer can make us hold.
MAX_CONTROL_FRAME = 64 * 1024
MAX_HEADER_BLOCK = 64 * 1024

# The SPDY/3 header compression dictionary (draft-mbelshe-httpbis-spdy-00 section 2.6.10.1):
# length-prefixed common header names and tokens, then a run of status lines, dates and media
# types; spdystream's `spdy/dictionary.go` holds the same 1423 bytes.
_DICTIONARY_WORDS = (
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
    "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
    "cache-control", "connection", "content-base", "content-encoding", "content-language",
    "content-length", "content-location", "content-md5", "content-range", "content-type", "date",
    "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since", "if-none-match",
    "if-range", "if-unmodified-since", "last-modified", "location", "max-forwards", "pragma",
    "proxy-authenticate", "proxy-authorization", "range", "referer", "retry-after", "server", "te",
    "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
    "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url",
    "public", "set-cookie", "keep-alive", "origin",
)  # fmt: skip
_DICTIONARY_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00"
    " Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
DICTIONARY = b"".join(
    struct.pack("!I", len(word)) + word.encode("ascii") for word in _DICTIONARY_WORDS
) + _DICTIONARY_TAIL.encode("ascii")


class SpdyError(Exception):
    """The bytes are not SPDY/3 as Kubernetes speaks it; nothing more can be read from them."""


@dataclass(frozen=True)
class StreamOpened:
    """A SYN_STREAM: the stream's id and its headers (the first value of each name)."""

    stream_id: int
    headers: dict[str, str]


@dataclass(frozen=True)
class StreamData:
    """Part of a data frame's payload, as it arrived."""

    stream_id: int
    data: bytes


Event = StreamOpened | StreamData


class FrameReader:
    """Frames of one direction of a SPDY connection, read as the bytes arrive.

    With `headers` False, header blocks are skipped unread (the direction whose headers are
    not needed); with True, every block is decompressed in order, as the shared zlib stream
    requires, and each SYN_STREAM is reported.
    """

    def __init__(self, headers: bool) -> None:
        self._inflater = zlib.decompressobj(zdict=DICTIONARY) if headers else None
        self._head = b""  # the current frame's first bytes, until all 8 are in
        self._left = 0  # payload bytes of the current frame still to come
        self._stream_id: int | None = None  # data frame: its stream; None: a control frame
        self._control: bytearray | None = None  # a control frame's payload being kept
        self._control_type = 0

    def feed(self, data: bytes) -> Iterator[Event]:
        """What `data` (the next bytes of this direction) completes or carries; raises
        SpdyError at the first thing that is not SPDY/3."""
        view = memoryview(data)
        while view:
            if self._left == 0 and len(self._head) < 8:
                need = 8 - len(self._head)
                self._head += bytes(view[:need])
                view = view[need:]
                if len(self._head) < 8:
                    return
                yield from self._start_frame()
                continue
            piece, view = view[: self._left], view[self._left :]
            self._left -= len(piece)
            if self._stream_id is not None:
                if piece:
                    yield StreamData(self._stream_id, bytes(piece))
            elif self._control is not None:
                self._control += piece
            if self._left == 0:
                yield from self._end_frame()

    def _start_frame(self) -> Iterator[Event]:
        first, second = struct.unpack("!II", self._head)
        self._left = second & 0xFFFFFF
        if first & 0x80000000:
            version = (first >> 16) & 0x7FFF
            if version != VERSION:
                raise SpdyError(f"SPDY version {version}, not {VERSION}")
            self._stream_id = None
            self._control_type = first & 0xFFFF
            wanted = self._inflater is not None and self._control_type in (
                SYN_STREAM,
                SYN_REPLY,
                HEADERS,
            )
            if wanted and self._left > MAX_CONTROL_FRAME:
                raise SpdyError(f"a control frame of {self._left} bytes")
            self._control = bytearray() if wanted else None
        else:
            self._stream_id = first & 0x7FFFFFFF
            self._control = None
        if self._left == 0:
            yield from self._end_frame()

    def _end_frame(self) -> Iterator[Event]:
        self._head = b""
        control, self._control = self._control, None
        if control is None:
            return
        # SYN_STREAM: stream id, associated stream id, priority and slot; the others: stream id.
        offset = 10 if self._control_type == SYN_STREAM else 4
        if len(control) < offset:
            raise SpdyError("a control frame shorter than its fields")
        headers = self._header_block(bytes(control[offset:]))
        if self._control_type == SYN_STREAM:
            (stream_id,) = struct.unpack_from("!I", control)
            yield StreamOpened(stream_id & 0x7FFFFFFF, headers)

    def _header_block(self, compressed: bytes) -> dict[str, str]:
        assert self._inflater is not None
        try:
            block = self._inflater.decompress(compressed, MAX_HEADER_BLOCK)
        except zlib.error as e:
            raise SpdyError(f"header block: {e}") from None
        if self._inflater.unconsumed_tail:
            raise SpdyError(f"a header block over {MAX_HEADER_BLOCK} bytes")
        return parse_header_block(block)


def parse_header_block(block: bytes) -> dict[str, str]:
    """Name -> first value (several values are joined by NUL on the wire)."""
    headers: dict[str, str] = {}
    try:
        (count,) = struct.unpack_from("!I", block)
        offset = 4
        for _ in range(count):
            fields = []
            for _field in range(2):
                (size,) = struct.unpack_from("!I", block, offset)
                offset += 4 + size
                if offset > len(block):
                    raise SpdyError("a header block cut short")
                fields.append(block[offset - size : offset].decode("utf-8", "replace"))
            name, value = fields
            headers.setdefault(name, value.split("\0", 1)[0])
    except struct.error:
        raise SpdyError("a header block cut short") from None
    return headers
