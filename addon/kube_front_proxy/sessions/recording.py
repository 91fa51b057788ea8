"""One exec or attach session as an asciicast: what came on each channel, as events in a file.

stdin becomes "i" events, stdout and stderr "o" events (what the user's terminal showed), each
channel's bytes decoded as UTF-8 as they arrive (a character split across messages is kept
whole; bytes that are not UTF-8, such as the tar stream of `kubectl cp`, become U+FFFD, as
asciinema itself records them). Terminal sizes become "r" events, and the first one the header's
width and height. The error channel (the session's closing Status) is not recorded. Byte counts
are of the channels' own bytes and go on past the file's size limit.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kube_front_proxy.sessions.asciicast import CastWriter
from kube_front_proxy.sessions.remotecommand import Channel, TerminalSizes

# asciicast's own default, for sessions without a resize (no TTY).
DEFAULT_SIZE = (80, 24)
# The proxy's fields in the header (players ignore them).
OWN = "kube_front_proxy"


class Recording:
    """Channel pieces in, events out; every method may raise OSError (the file failed)."""

    def __init__(
        self,
        cast: CastWriter,
        header: dict[str, Any],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cast = cast
        self.header = header
        self.bytes_in = 0
        self.bytes_out = 0
        self._clock = clock
        self._started = clock()
        self._sizes = TerminalSizes()
        self._sized = False
        self._text = {
            channel: codecs.getincrementaldecoder("utf-8")("replace")
            for channel in (Channel.STDIN, Channel.STDOUT, Channel.STDERR)
        }

    @classmethod
    def start(cls, path: Path, max_bytes: int, title: str, own: dict[str, Any]) -> Recording:
        """A new recording in a new file at `path`; `own` holds the proxy's header fields."""
        width, height = DEFAULT_SIZE
        header: dict[str, Any] = {
            "version": 2,
            "width": width,
            "height": height,
            "timestamp": int(time.time()),
            "title": title,
            OWN: own,
        }
        return cls(CastWriter.create(path, header, max_bytes), header)

    def piece(self, channel: Channel, data: bytes) -> None:
        if channel == Channel.RESIZE:
            for width, height in self._sizes.feed(data):
                self._resize(width, height)
            return
        if channel == Channel.STDIN:
            self.bytes_in += len(data)
            code = "i"
        elif channel in (Channel.STDOUT, Channel.STDERR):
            self.bytes_out += len(data)
            code = "o"
        else:
            return
        if not self.cast.truncated:
            text = self._text[channel].decode(data)
            if text:
                self.cast.event(self._clock() - self._started, code, text)

    def _resize(self, width: int, height: int) -> None:
        if not self._sized:
            self._sized = True
            self.header.update(width=width, height=height)
            self.cast.rewrite_header(self.header)
        self.cast.event(self._clock() - self._started, "r", f"{width}x{height}")

    def note(self, **fields: Any) -> None:
        """Add to the proxy's fields in the header, now."""
        self.header[OWN].update(fields)
        self.cast.rewrite_header(self.header)

    def finish(self, error: str = "") -> None:
        """The session is over: the rest of any split character, the totals; the file closed."""
        try:
            duration = round(self._clock() - self._started, 6)
            for channel, decoder in self._text.items():
                rest = decoder.decode(b"", final=True)
                if rest:
                    self.cast.event(duration, "i" if channel == Channel.STDIN else "o", rest)
            self.header["duration"] = duration
            own = self.header[OWN]
            own.update(bytes_in=self.bytes_in, bytes_out=self.bytes_out,
                       truncated=self.cast.truncated, ended=True)  # fmt: skip
            if error:
                own["error"] = error
            self.cast.rewrite_header(self.header)
        finally:
            self.cast.close()
