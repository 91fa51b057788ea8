"""Real child processes for tests (their output in a log file), free ports, where things are."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from .waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
KUBECTL = "/usr/bin/kubectl"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Process:
    """A child process whose combined output goes to a log file."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            args,
            cwd=REPO,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        # An exited process cannot print it any more: stop waiting then.
        wait_until(
            lambda: re.search(pattern, self.output()) or self.proc.poll() is not None,
            timeout,
            lambda: f"{self.args[0]}: {pattern!r} not seen (still running):\n{self.output()}",
        )
        match = re.search(pattern, self.output())
        if match is None:
            raise AssertionError(
                f"{self.args[0]}: {pattern!r} not seen (exit {self.proc.poll()}):\n{self.output()}"
            )
        return match

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._out.close()


@contextlib.contextmanager
def running(proc: Process) -> Iterator[Process]:
    try:
        yield proc
    finally:
        proc.stop()
