"""An in-memory byte pipe between threads: what `io.Pipe` is to the Go code the emulator mimics."""

from __future__ import annotations

import threading


class Pipe:
    """Bytes written by one thread, read by another; `read` blocks until data or close."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._buffer = bytearray()
        self._closed = False

    def write(self, data: bytes) -> None:
        with self._cond:
            if self._closed:
                return  # the reader's side is gone: dropped, as a reset stream drops data
            self._buffer += data
            self._cond.notify_all()

    def close(self) -> None:
        """EOF for the reader once the buffered bytes are read."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

    def read(self, n: int = 65536, timeout: float | None = None) -> bytes:
        """Up to n bytes (at least one unless at EOF or timed out); b"" at EOF."""
        with self._cond:
            self._cond.wait_for(lambda: self._buffer or self._closed, timeout)
            data = bytes(self._buffer[:n])
            del self._buffer[:n]
            return data

    def readable(self) -> bool:
        return True
