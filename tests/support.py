"""Helpers for tests: config files, free ports, and real processes (proxy, emulator)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
KUBECTL = "/usr/bin/kubectl"


def wait_until(condition: Callable[[], object], timeout: float = 10) -> None:
    """Poll condition until it is true; fail after timeout seconds (instead of a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge overrides into a copy of base; a None value deletes the key."""
    out = dict(base)
    for key, value in overrides.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def proxy_config(
    pki: Path, upstream_port: int, listen_port: int, **overrides: Any
) -> dict[str, Any]:
    base = {
        "listen": {"host": "127.0.0.1", "port": listen_port},
        "serving": {"cert": str(pki / "proxy-server.crt"), "key": str(pki / "proxy-server.key")},
        "upstream": {
            "servers": [f"https://127.0.0.1:{upstream_port}"],
            "ca": str(pki / "ca.crt"),
            "server_name": "kubernetes",
            "client_cert": str(pki / "front-proxy-client.crt"),
            "client_key": str(pki / "front-proxy-client.key"),
        },
        "authn": {"htpasswd": "htpasswd", "users": "users.yaml"},
    }
    return merge(base, overrides)


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.output())
            if match:
                return match
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(
            f"{self.args[0]}: {pattern!r} not seen (exit {self.proc.poll()}):\n{self.output()}"
        )

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


def start_proxy(config: Path, log: Path, *extra: str, tool: str = "mitmdump") -> Process:
    """Start the proxy exactly as the README says."""
    proc = Process(
        [str(BIN / tool), "-s", str(REPO / "addon" / "k8s_auth.py"),
         "--set", f"k8s_auth_config={config}", *extra],
        log,
    )  # fmt: skip
    return proc


@contextlib.contextmanager
def running(proc: Process) -> Iterator[Process]:
    try:
        yield proc
    finally:
        proc.stop()


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


HTPASSWD_FLAGS = {
    "bcrypt": ["-B", "-C", "5"],
    "apr1": ["-m"],
    "sha256": ["-2"],
    "sha512": ["-5"],
    "sha1": ["-s"],
}


def htpasswd_add(path: Path, user: str, password: str, scheme: str) -> None:
    """Add a user with Apache's real htpasswd tool (apache2-utils)."""
    tool = shutil.which("htpasswd")
    if tool is None:
        pytest.fail("htpasswd (apache2-utils) is required; .ci/run installs it")
    create = [] if path.exists() else ["-c"]
    subprocess.run(
        [tool, "-b", *create, *HTPASSWD_FLAGS[scheme], str(path), user, password],
        check=True,
        capture_output=True,
    )


def raw_request(
    host: str,
    port: int,
    context: ssl.SSLContext,
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    body: bytes | None = None,
    timeout: float = 30,
    source: str | None = None,
) -> tuple[int, list[tuple[str, str]], bytes]:
    """One HTTPS/1.1 request with exactly these headers, repeated names included; from the
    source address if given (any of 127.0.0.0/8 reaches a proxy on 127.0.0.1)."""
    conn = http.client.HTTPSConnection(
        host, port, context=context, timeout=timeout,
        source_address=(source, 0) if source else None,
    )  # fmt: skip
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value.encode("utf-8"))
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        conn.close()


def tls_exchange(
    port: int,
    context: ssl.SSLContext,
    data: bytes,
    *,
    source: str = "127.0.0.1",
    timeout: float = 10,
    until: bytes | None = None,
) -> bytes:
    """Send raw bytes over one TLS connection from `source` and read until the server closes
    it, or what has come holds `until` (or `timeout` passes without a byte: then what came so
    far, for a hung connection)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(data)
        out = b""
        while True:
            try:
                chunk = tls.recv(65536)
            except (TimeoutError, ssl.SSLError, OSError):
                return out
            if not chunk:
                return out
            out += chunk
            if until is not None and until in out:
                return out


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
