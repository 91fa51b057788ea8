"""kubectl exec -it on a real pseudo-terminal: the test types the keys and reads the screen."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import termios

from .harness import Proxy
from .processes import KUBECTL, read_until
from .upgrades import TIMEOUT
from .waiting import wait_until

ROWS, COLS = 40, 100


class Terminal:
    """kubectl on the slave side of a fresh pty of ROWS x COLS; the test holds the master."""

    def __init__(self, proxy: Proxy, env: dict[str, str], *command: str) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        self.proc = subprocess.Popen(
            [KUBECTL, "--kubeconfig", str(proxy.kubeconfig("alice")),
             "exec", "-it", "nginx-1", "--", *command],
            stdin=slave, stdout=slave, stderr=subprocess.PIPE,
            env={**os.environ, **env}, start_new_session=True,
        )  # fmt: skip
        os.close(slave)
        self.output = b""

    def wait_for_raw_mode(self) -> None:
        """Until kubectl has switched echo and line editing off (what it does before it dials):
        typed earlier, the keys would be echoed and edited by this side's line discipline."""

        def raw() -> bool:
            assert self.proc.poll() is None, self.proc.communicate()
            return not termios.tcgetattr(self.master)[3] & (termios.ICANON | termios.ECHO)

        wait_until(raw, TIMEOUT, "kubectl never put the terminal in raw mode", interval=0.02)

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.proc.send_signal(signal.SIGWINCH)

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def read_until(self, expected: bytes) -> None:
        before = self.output
        self.output += read_until(self.master, lambda seen: expected in before + seen, TIMEOUT)

    def finish(self) -> tuple[int, bytes, bytes]:
        """kubectl's exit code, everything it wrote to the terminal, and its stderr."""
        try:
            _, stderr = self.proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise
        while select.select([self.master], [], [], 0)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the slave side is closed and drained
                break
            if not chunk:
                break
            self.output += chunk
        os.close(self.master)
        return self.proc.returncode, self.output, stderr
