"""mitmweb's options API cannot re-point the proxy or open a path around its checks.

Changing `k8s_auth_config` at run time follows the reload's rules: a config with another
listener or other API servers is refused and the proxy keeps serving as before. The mitmproxy
options that would relay bytes past the HTTP layer (raw TCP, TLS passthrough) belong to the
proxy and cannot be changed either.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.configs import proxy_config, write_yaml
from tests.support.harness import Emulator, Proxy, start_proxy_for
from tests.support.mitmweb import MitmwebClient
from tests.support.processes import free_port

WEB_TOKEN = "mitmweb-test-token"


@pytest.fixture
def web(pki: Path, emulator: Emulator, tmp_path: Path) -> tuple[Proxy, MitmwebClient]:
    web_port = free_port()
    proxy = start_proxy_for(
        pki, tmp_path, emulator.port,
        "--set", "web_open_browser=false", "--set", f"web_port={web_port}",
        "--set", f"web_password={WEB_TOKEN}",
        tool="mitmweb", upstream={"check_cluster_trust": False},  # no request of its own
    )  # fmt: skip
    yield proxy, MitmwebClient(web_port, WEB_TOKEN)
    proxy.process.stop()


def test_a_config_with_another_listener_and_upstream_is_refused(
    web: tuple[Proxy, MitmwebClient], pki: Path, tmp_path: Path
) -> None:
    proxy, client = web
    elsewhere = write_yaml(tmp_path / "elsewhere.yaml", proxy_config(pki, free_port(), free_port()))
    status, body = client.call("PUT", "/options", {"k8s_auth_config": str(elsewhere)})
    assert status == 400 and b"need a restart" in body
    assert client.options()["k8s_auth_config"] == str(proxy.config)
    # Still listening where it was, still forwarding to the same API server.
    assert proxy.whoami("alice")["username"] == "alice"


def test_a_compatible_config_is_taken_like_a_reload(
    web: tuple[Proxy, MitmwebClient], tmp_path: Path
) -> None:
    proxy, client = web
    same = tmp_path / "same.yaml"
    same.write_text(proxy.config.read_text())
    status, body = client.call("PUT", "/options", {"k8s_auth_config": str(same)})
    assert status == 200, body
    assert proxy.whoami("alice")["username"] == "alice"


@pytest.mark.parametrize("option", ["tcp_hosts", "ignore_hosts", "allow_hosts", "udp_hosts"])
def test_options_that_bypass_the_http_layer_are_owned(
    web: tuple[Proxy, MitmwebClient], emulator: Emulator, option: str
) -> None:
    proxy, client = web
    status, body = client.call("PUT", "/options", {option: [".*"]})
    assert status == 400 and option.encode() in body, body
    assert client.options()[option] == []
    # A raw request that spoofs an identity still meets the HTTP layer's checks.
    before = len(emulator.requests())
    status, _, reply = proxy.raw("GET", "/api", [("X-Remote-User", "system:admin")])
    assert status == 401 and json.loads(reply)["kind"] == "Status"
    assert emulator.requests()[before:] == []
