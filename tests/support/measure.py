"""What an attack costs: a process's memory and CPU, and a bystander's latencies."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .api_paths import PODS
from .harness import Proxy
from .http1 import raw_request
from .users import basic_header, password_of


def rss_mib(pid: int) -> float:
    """A process's resident memory (VmRSS), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """The CPU time a process has used so far (user + system, /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PeakRss:
    """The highest VmRSS of a process while the `with` block runs, sampled every 10 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = self.peak = rss_mib(pid)
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss_mib(self.pid))

    @property
    def growth(self) -> float:
        return self.peak - self.before

    def __enter__(self) -> PeakRss:
        self._sampler.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._sampler.join()
        self.peak = max(self.peak, rss_mib(self.pid))


class Bystander:
    """Another user's requests, one after the other, while an attack runs: their latencies."""

    def __init__(self, request: Callable[[], int]) -> None:
        self._request = request
        self.latencies: list[float] = []
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.statuses.append(self._request())
            self.latencies.append(time.monotonic() - started)

    @property
    def worst(self) -> float:
        return max(self.latencies)

    def __enter__(self) -> Bystander:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def bystander(proxy: Proxy) -> Bystander:
    """Another user listing pods, one request after the other."""
    context = proxy.context()
    login = basic_header("apr1-user", password_of("apr1-user"))

    def request() -> int:
        status, _, _ = raw_request("127.0.0.1", proxy.port, context, "GET", PODS, [login])
        return status

    return Bystander(request)
