"""The files a test writes and reads: proxy configs, YAML, htpasswd files (written by Apache's
own tool), JSON lines."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kube_front_proxy.authn.oidc_config import OidcSettings
from kube_front_proxy.config.settings import FileRef, load_settings


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


def write_kubeconfig(path: Path, server: str, ca: Path, user: dict[str, str]) -> Path:
    """A kubeconfig with one cluster (server, trusted by ca) and one user entry: Basic
    (username, password), a token, or client-certificate and client-key."""
    return write_yaml(path, {
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {
            "server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": "test", "user": user}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
    })  # fmt: skip


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


def htpasswd_ref(path: Path) -> FileRef:
    """authn.htpasswd in a config.yaml beside the file."""
    return FileRef(path, path.parent / "config.yaml", "authn.htpasswd")


def oidc_section(tmp_path: Path, oidc: dict[str, Any]) -> OidcSettings:
    """authn.oidc as written in a real config.yaml (whose other files are never read here)."""
    path = tmp_path / "config.yaml"
    upstream = {"servers": ["https://a"], "ca": "ca", "client_cert": "c", "client_key": "k"}
    config = {"serving": {"cert": "c", "key": "k"}, "upstream": upstream,
              "authn": {"oidc": oidc}}  # fmt: skip
    path.write_text(yaml.safe_dump(config))
    settings = load_settings(path).oidc
    assert settings is not None
    return settings
