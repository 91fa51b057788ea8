"""A client's HTTP/2 frames, measured as their bytes arrive, before the h2 library buffers them.

The h2 library holds a frame until all of it has arrived and checks its length only then (its
`FrameBuffer`), and holds a header block (HEADERS, then CONTINUATION frames up to END_HEADERS)
until the block is complete, up to 64 frames. With mitmproxy's 128 KiB frames that is about
8.5 MiB per connection before any check runs, and a frame header may announce 16 MiB: the
CVE-2024-27316 class, open to anyone who can connect. `FrameMeter` follows the frame headers in
the byte stream (9 bytes each, RFC 9113 4.1) and says when to refuse the connection: at the
header of a frame longer than the advertised SETTINGS_MAX_FRAME_SIZE, and as soon as a header
block that has not ended is longer than the request head limit. A complete block is left to the
h2 stack and the request head limit (a 431 Status for that stream).
"""

from __future__ import annotations

from dataclasses import dataclass

from h2.errors import ErrorCodes

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER = 9
HEADERS = 0x1
CONTINUATION = 0x9
END_HEADERS = 0x4


@dataclass(frozen=True)
class Refusal:
    message: str
    error_code: ErrorCodes


class FrameMeter:
    """Follows one client connection's frame headers; `feed` every byte received, in order."""

    def __init__(self, max_frame_size: int, max_header_block: int) -> None:
        self.max_frame_size = max_frame_size
        self.max_header_block = max_header_block
        self._preface_left = len(PREFACE)
        self._header = bytearray()
        self._payload_left = 0
        self._block: int | None = None  # bytes of a header block that has not ended

    def feed(self, data: bytes) -> Refusal | None:
        """Why the connection must be refused after these bytes, or None."""
        size = len(data)
        pos = min(self._preface_left, size)
        self._preface_left -= pos
        while pos < size:
            if self._payload_left:
                step = min(self._payload_left, size - pos)
                self._payload_left -= step
                pos += step
                continue
            take = min(FRAME_HEADER - len(self._header), size - pos)
            self._header += data[pos : pos + take]
            pos += take
            if len(self._header) < FRAME_HEADER:
                break
            refusal = self._frame(
                int.from_bytes(self._header[:3]), self._header[3], self._header[4]
            )
            self._header.clear()
            if refusal:
                return refusal
        return None

    def _frame(self, length: int, kind: int, flags: int) -> Refusal | None:
        if length > self.max_frame_size:
            return Refusal(
                f"HTTP/2 frame of {length} bytes, over the {self.max_frame_size} advertised",
                ErrorCodes.FRAME_SIZE_ERROR,
            )
        self._payload_left = length
        if kind == HEADERS:
            self._block = length
        elif kind == CONTINUATION and self._block is not None:
            self._block += length
        else:
            return None  # h2 refuses anything else inside a header block
        if flags & END_HEADERS:
            self._block = None
        elif self._block > self.max_header_block:
            return Refusal(
                f"HTTP/2 header block over {self.max_header_block} bytes before its end",
                ErrorCodes.ENHANCE_YOUR_CALM,
            )
        return None
