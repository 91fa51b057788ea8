"""Real processes for end-to-end tests: the API-server emulator, the proxy, kubectl."""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .support import (
    KUBECTL,
    Process,
    free_port,
    htpasswd_add,
    proxy_config,
    raw_request,
    read_json_lines,
    start_proxy,
    tls_exchange,
    write_yaml,
)

# One user per htpasswd scheme, each with the scheme in its password.
SCHEME_USERS = {
    "bcrypt": "bcrypt-user",
    "apr1": "apr1-user",
    "sha256": "sha256-user",
    "sha512": "sha512-user",
    "sha1": "sha1-user",
}
ALICE_PASSWORD = "alice-pässword"
ALICE = {
    "groups": ["developers", "system:masters", "a,b"],
    "uid": "1001",
    "extra": {"scopes": ["view", "edit"], "acme.com/project": ["payments"]},
}

# What the API server receives for alice, header line by header line.
ALICE_LINES = [
    ["X-Remote-User", "alice"],
    ["X-Remote-Uid", "1001"],
    ["X-Remote-Group", "developers"],
    ["X-Remote-Group", "system:masters"],
    ["X-Remote-Group", "a,b"],
    ["X-Remote-Extra-scopes", "view"],
    ["X-Remote-Extra-scopes", "edit"],
    ["X-Remote-Extra-acme.com%2Fproject", "payments"],
]


def password_of(user: str) -> str:
    return ALICE_PASSWORD if user == "alice" else f"{user}-secret"


def write_users(directory: Path) -> None:
    htpasswd_add(directory / "htpasswd", "alice", ALICE_PASSWORD, "bcrypt")
    for scheme, user in SCHEME_USERS.items():
        htpasswd_add(directory / "htpasswd", user, password_of(user), scheme)
    write_yaml(directory / "users.yaml", {"users": {"alice": ALICE}})


@dataclass
class Emulator:
    process: Process
    port: int
    request_log: Path

    def requests(self) -> list[dict[str, Any]]:
        return read_json_lines(self.request_log)


def start_emulator(pki: Path, workdir: Path, *flags: str) -> Emulator:
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

    def kubeconfig(self, user: str, password: str | None = None) -> Path:
        """A kubeconfig for the proxy with Basic credentials, as `kubectl config
        set-credentials --username --password` writes them."""
        path = self.workdir / f"kubeconfig-{user}-{password is not None}-{self.port}"
        user_entry = {"username": user, "password": password or password_of(user)}
        write_yaml(path, {
            "apiVersion": "v1", "kind": "Config", "current-context": "proxy",
            "clusters": [{"name": "proxy", "cluster": {
                "server": f"https://127.0.0.1:{self.port}",
                "certificate-authority": str(self.pki / "proxy-ca.crt")}}],
            "users": [{"name": "u", "user": user_entry}],
            "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "u"}}],
        })  # fmt: skip
        return path

    def kubectl(self, *args: str, user: str = "alice", password: str | None = None,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
        return subprocess.run(
            [KUBECTL, "--kubeconfig", str(self.kubeconfig(user, password)), *args],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
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
        return ssl.create_default_context(cafile=str(self.pki / "proxy-ca.crt"))

    def exchange(self, data: bytes, source: str = "127.0.0.1", timeout: float = 10,
                 until: bytes | None = None) -> bytes:  # fmt: skip
        """Raw bytes to the proxy over TLS (from `source`, any 127.x address); its answer
        (what came until the proxy closed, or until `until` came)."""
        return tls_exchange(self.port, self.context(), data, source=source, timeout=timeout,
                            until=until)  # fmt: skip


def basic_header(user: str, password: str) -> tuple[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return ("Authorization", f"Basic {token}")


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
