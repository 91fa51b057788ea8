"""Real processes for end-to-end tests: the API-server emulator and the proxy in front of it,
started as the README says, with kubectl and raw HTTPS clients pointed at the proxy."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .configs import proxy_config, read_json_lines, write_kubeconfig, write_yaml
from .http1 import raw_request, tls_exchange
from .http2 import H2Client
from .processes import BIN, KUBECTL, REPO, Process, free_port, kubectl
from .users import password_of, write_users


@dataclass
class Emulator:
    process: Process
    port: int
    request_log: Path

    def requests(self) -> list[dict[str, Any]]:
        return read_json_lines(self.request_log)

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *_: object) -> None:
        self.process.stop()


def start_emulator(pki: Path, workdir: Path, *flags: str) -> Emulator:
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "emulator-requests.jsonl"
    process = Process(
        [sys.executable, "-m", "tests.emulator", "--secure-port", "0",
         "--tls-cert-file", str(pki / "apiserver.crt"),
         "--tls-private-key-file", str(pki / "apiserver.key"),
         "--client-ca-file", str(pki / "ca.crt"),
         "--requestheader-client-ca-file", str(pki / "front-proxy-ca.crt"),
         "--requestheader-allowed-names", "front-proxy-client",
         "--request-log", str(log), *flags],
        workdir / "emulator.out",
    )  # fmt: skip
    port = int(process.wait_for(r"listening on https://127\.0\.0\.1:(\d+)").group(1))
    return Emulator(process, port, log)


@dataclass
class Proxy:
    process: Process
    port: int
    config: Path
    pki: Path
    workdir: Path
    kubeconfigs: dict[str, Path] = field(default_factory=dict)

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *_: object) -> None:
        self.process.stop()

    def kubeconfig(self, user: str, password: str | None = None) -> Path:
        """A kubeconfig for the proxy with Basic credentials, as `kubectl config
        set-credentials --username --password` writes them."""
        user_entry = {"username": user, "password": password or password_of(user)}
        return self.kubeconfig_with(user_entry, f"{user}-{password is not None}")

    def kubeconfig_with(self, user: dict[str, str], name: str) -> Path:
        """A kubeconfig for the proxy with this user entry (a token, a client certificate)."""
        path = self.workdir / f"kubeconfig-{name}-{self.port}"
        return write_kubeconfig(path, f"https://127.0.0.1:{self.port}", self.pki / "proxy-ca.crt",
                                user)  # fmt: skip

    def kubectl(self, *args: str, user: str = "alice", password: str | None = None,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
        return kubectl(self.kubeconfig(user, password), *args, env=env)

    def kubectl_running(self, *args: str, env: dict[str, str] | None = None
                        ) -> subprocess.Popen[bytes]:  # fmt: skip
        """alice's kubectl that does not end by itself (a watch, logs -f, port-forward): read its
        stdout with processes.read_until, and kill it."""
        return subprocess.Popen(
            [KUBECTL, "--kubeconfig", str(self.kubeconfig("alice")), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )  # fmt: skip

    def whoami(self, user: str = "alice", password: str | None = None) -> dict[str, Any]:
        result = self.kubectl("auth", "whoami", "-o", "json", user=user, password=password)
        assert result.returncode == 0, result.stderr
        info: dict[str, Any] = json.loads(result.stdout)["status"]["userInfo"]
        return info

    def raw(self, method: str, path: str, headers: list[tuple[str, str]],
            body: bytes | None = None, source: str | None = None,
            ) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
        """One HTTPS/1.1 request with exactly these headers, repeated names included, from
        the source address if given (127.0.0.2, ...)."""
        status, headers, content = raw_request(
            "127.0.0.1", self.port, self.context(), method, path, list(headers), body,
            source=source,
        )  # fmt: skip
        return status, dict(headers), content

    def context(self) -> ssl.SSLContext:
        """A TLS client context that trusts the proxy's serving certificate."""
        return ssl.create_default_context(cafile=str(self.pki / "proxy-ca.crt"))

    def connect(self, source: str = "127.0.0.1", timeout: float = 30,
                server_name: str = "localhost") -> ssl.SSLSocket:  # fmt: skip
        """A TLS connection to the proxy from `source` (any 127.x address), for raw bytes."""
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=timeout,
                                       source_address=(source, 0))  # fmt: skip
        return self.context().wrap_socket(raw, server_hostname=server_name)

    def h2(self, server_name: str = "127.0.0.1", source: str = "127.0.0.1",
           initial_window: int | None = None) -> H2Client:  # fmt: skip
        """An HTTP/2 connection to the proxy (tests/support/http2.py)."""
        return H2Client(self.port, self.context(), server_name, source,
                        initial_window=initial_window)  # fmt: skip

    def upstream_connections(self, upstream_port: int) -> int:
        """Established connections from the proxy process to this port, read from `ss`."""
        out = subprocess.run(
            ["ss", "-Htnp", "state", "established", "dport", f"= :{upstream_port}"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        return sum(1 for line in out.splitlines() if f"pid={self.process.proc.pid}," in line)

    def exchange(self, data: bytes, source: str = "127.0.0.1", timeout: float = 10,
                 until: bytes | None = None) -> bytes:  # fmt: skip
        """Raw bytes to the proxy over TLS (from `source`, any 127.x address); its answer
        (what came until the proxy closed, or until `until` came)."""
        return tls_exchange(self.port, self.context(), data, source=source, timeout=timeout,
                            until=until)  # fmt: skip


def start_proxy(config: Path, log: Path, *extra: str, tool: str = "mitmdump") -> Process:
    """Start the proxy exactly as the README says."""
    proc = Process(
        [str(BIN / tool), "-s", str(REPO / "addon" / "k8s_auth.py"),
         "--set", f"k8s_auth_config={config}", *extra],
        log,
    )  # fmt: skip
    return proc


def start_proxy_for(
    pki: Path, workdir: Path, upstream_port: int, *extra: str, tool: str = "mitmdump",
    **overrides: Any,
) -> Proxy:  # fmt: skip
    workdir.mkdir(parents=True, exist_ok=True)
    if not (workdir / "htpasswd").exists():
        write_users(workdir)
    port = free_port()
    config = write_yaml(
        workdir / "config.yaml", proxy_config(pki, upstream_port, port, **overrides)
    )
    process = start_proxy(config, workdir / f"{tool}-{port}.out", *extra, tool=tool)
    process.wait_for(rf"reverse proxy to .* listening at 127\.0\.0\.1:{port}")
    return Proxy(process, port, config, pki, workdir)


def watch_requests(emulator: Emulator, since: int = 0) -> list[str]:
    return [r["path"] for r in emulator.requests()[since:] if "watch=true" in r["path"]]
