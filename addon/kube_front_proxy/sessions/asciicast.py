"""asciicast v2 files (asciinema's format), written as a session runs, at most `max_bytes` long.

https://docs.asciinema.org/manual/asciicast/v2/: a header line, a JSON object with `version` 2,
`width`, `height`, `timestamp` (and here `title`, `command` and the proxy's own `kube_front_proxy`
object, which players ignore), then one JSON array per line: `[seconds, code, text]`, with code
"o" for output, "i" for input, "r" for a resize ("COLSxROWS"). An empty line would end the file
for asciinema's reader, so none is ever written.

What is known only later (the terminal size from the first resize, the duration, the byte counts,
whether the file was cut) goes into the header in place: the header line is padded with spaces
(which JSON allows) to leave room, and rewritten at offset 0 with pwrite. A player that opens the
file mid-session reads a valid header and every complete event so far.

Each event is one write(2) of one line, straight to the file: nothing is held in memory. When a
line would take the file past `max_bytes`, it and every later event are counted, not written
(`truncated`). A failed write (a full disk) cuts the file back to its last complete line, so it
stays readable, and raises.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

# Room left in the header line for what is learnt later: sizes, duration, counts, flags.
HEADER_ROOM = 512


# Characters some line readers take for line ends; JSON escapes the others (CR, LF, ...).
_LINE_ENDS = (("\x85", "\\u0085"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029"))


def event_line(seconds: float, code: str, text: str) -> bytes:
    return _json_line([round(seconds, 6), code, text]) + b"\n"


def _json_line(value: object) -> bytes:
    line = json.dumps(value, ensure_ascii=False)
    for char, escape in _LINE_ENDS:
        if char in line:  # str.translate would cost 100 times more, on every line
            line = line.replace(char, escape)
    return line.encode()


class CastWriter:
    """One .cast file being written; raises OSError when the file cannot be written."""

    def __init__(self, fd: int, path: Path, header: dict[str, Any], max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.truncated = False
        self._fd: int | None = fd
        line = _json_line(header)
        self._header_size = len(line) + HEADER_ROOM
        self._size = self._header_size + 1
        _write_all(fd, line.ljust(self._header_size) + b"\n")

    @classmethod
    def create(cls, path: Path, header: dict[str, Any], max_bytes: int) -> CastWriter:
        """A new file, owner-only (0600): recordings hold whatever was typed, passwords too.
        Never an existing file or a symbolic link."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
        try:
            return cls(fd, path, header, max_bytes)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            raise

    def event(self, seconds: float, code: str, text: str) -> None:
        if self.truncated or self._fd is None:
            return
        line = event_line(seconds, code, text)
        if self._size + len(line) > self.max_bytes:
            self.truncated = True
            return
        try:
            _write_all(self._fd, line)
        except OSError:
            # A line written in part would end the file for a reader: cut back to the last one.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
            raise
        self._size += len(line)

    def rewrite_header(self, header: dict[str, Any]) -> bool:
        """Replace the header in place; False (nothing written) if it outgrew its room."""
        if self._fd is None:
            return False
        line = _json_line(header)
        if len(line) > self._header_size:
            return False
        os.pwrite(self._fd, line.ljust(self._header_size), 0)
        return True

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def discard(self) -> None:
        """Close and delete: no session took place."""
        self.close()
        with contextlib.suppress(OSError):
            self.path.unlink()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_header(path: Path) -> dict[str, Any]:
    """The header of a .cast file; ValueError if it has none."""
    with path.open("rb") as f:
        line = f.readline(1 << 20)
    header = json.loads(line)
    if not isinstance(header, dict) or header.get("version") != 2:
        raise ValueError("not an asciicast v2 file")
    return header
