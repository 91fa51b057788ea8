"""A real redis-server (Debian's package) for the tests: on a free loopback port, with a
password or TLS if asked; stopped, killed and started again on the same port."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest
import redis

from tests.support.processes import Process, free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    def __init__(
        self, workdir: Path, password: str | None = None, tls: tuple[Path, Path] | None = None
    ) -> None:
        """tls: the server's certificate and key (PEM); then only TLS is served."""
        if not Path(REDIS_SERVER).exists():
            pytest.fail("redis-server is missing: scripts/setup.sh --test installs it")
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.password = password
        self.tls = tls
        self.port = free_port()
        self.process: Process | None = None
        self.starts = 0
        self.start()

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        host = "localhost" if self.tls else "127.0.0.1"
        return f"{scheme}://{host}:{self.port}/0"

    def start(self) -> None:
        args = [REDIS_SERVER, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.workdir), "--protected-mode", "no"]  # fmt: skip
        if self.tls:
            cert, key = self.tls
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert),
                     "--tls-key-file", str(key), "--tls-auth-clients", "no"]  # fmt: skip
        else:
            args += ["--port", str(self.port)]
        if self.password:
            args += ["--requirepass", self.password]
        self.starts += 1
        self.process = Process(args, self.workdir / f"redis-{self.starts}.out")
        self.process.wait_for("Ready to accept connections")

    def kill(self) -> None:
        """SIGKILL: gone at once, with everything it held (no persistence)."""
        assert self.process
        self.process.proc.send_signal(signal.SIGKILL)
        self.process.proc.wait()
        self.process.stop()

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def client(self) -> redis.Redis:
        """A plain client for checks (DBSIZE, keys); not over TLS."""
        assert not self.tls
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password)

    def state(self, password_file: Path | None = None, **overrides: object) -> dict[str, object]:
        """The state.redis section for this server."""
        section: dict[str, object] = {"url": self.url, "timeout_seconds": 0.5}
        if password_file:
            section["password_file"] = str(password_file)
        return {**section, **overrides}
