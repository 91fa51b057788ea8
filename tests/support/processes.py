"""Real child processes for tests (their output in a log file), free ports, where things are."""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
KUBECTL = "/usr/bin/kubectl"


def read_until(
    source: subprocess.Popen[bytes] | int,
    until: bytes | Callable[[bytes], object],
    timeout: float,
) -> bytes:
    """What a never-ending command printed (on its stdout, or a file descriptor such as a pty's),
    up to `until` (bytes, or a test of all read so far); fails if it does not come in time or
    the output ends first."""
    if isinstance(source, int):
        fd = source
    else:
        assert source.stdout
        fd = source.stdout.fileno()
    done = until if callable(until) else lambda seen: until in seen
    seen = b""
    deadline = time.monotonic() + timeout
    while not done(seen):
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(remaining, 0))
        if not ready:
            raise AssertionError(f"{until!r} not received within {timeout} s; got {seen!r}")
        chunk = os.read(fd, 65536)
        if not chunk:
            raise AssertionError(f"stream ended before {until!r}; got {seen!r}")
        seen += chunk
    return seen


def kubectl(
    kubeconfig: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run kubectl with this kubeconfig; its output as text."""
    return subprocess.run(
        [KUBECTL, "--kubeconfig", str(kubeconfig), *args],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


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


def listening_ports(pid: int, protocol: str = "t") -> set[int]:
    """TCP (or with protocol "u", UDP) ports a process listens on, read from `ss`."""
    out = subprocess.run(["ss", f"-H{protocol}lnp"], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    ports = set()
    for line in out.splitlines():
        if f"pid={pid}," in line:
            ports.add(int(line.split()[3].rsplit(":", 1)[1]))
    return ports
