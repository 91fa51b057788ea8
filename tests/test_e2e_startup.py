"""End to end: start-up, the listener, upstream TLS verification, failing closed."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

from tests.support.configs import proxy_config, write_yaml
from tests.support.harness import Emulator, start_proxy, start_proxy_for
from tests.support.processes import REPO, free_port, listening_ports
from tests.support.users import basic_header, password_of, write_users


def test_only_the_configured_listener_serves(pki: Path, emulator: Emulator, tmp_path: Path) -> None:
    proxy = start_proxy_for(pki, tmp_path, emulator.port)
    try:
        assert listening_ports(proxy.process.proc.pid) == {proxy.port}
        # No HTTP/3 (UDP) listener, whose TLS would not be this addon's.
        assert listening_ports(proxy.process.proc.pid, "u") == set()
        # mitmproxy's default forward proxy (8080) is not there, not even refusing.
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", 8080), timeout=1).close()
        assert proxy.whoami()["username"] == "alice"
    finally:
        proxy.process.stop()


def failed_start_up(config: Path, log: Path) -> str:
    """Start the proxy as the README says, expect it to exit with an error; its output."""
    proc = start_proxy(config, log)
    try:
        assert proc.proc.wait(30) != 0
    finally:
        proc.stop()
    return proc.output()


def test_busy_port_stops_start_up_with_a_clear_error(
    pki: Path, emulator: Emulator, tmp_path: Path
) -> None:
    write_users(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = write_yaml(tmp_path / "config.yaml", proxy_config(pki, emulator.port, port))
        output = failed_start_up(config, tmp_path / "out.txt")
    assert f"cannot listen on 127.0.0.1:{port}" in output
    assert "address already in use" in output.lower()


def test_broken_config_stops_start_up_naming_file_and_key(pki: Path, tmp_path: Path) -> None:
    write_users(tmp_path)
    config = write_yaml(
        tmp_path / "config.yaml", proxy_config(pki, 6443, free_port(), listen={"prot": 1})
    )
    output = failed_start_up(config, tmp_path / "out.txt")
    assert f"{config}: listen.prot: unknown key" in output


@pytest.mark.parametrize(
    "upstream",
    [
        {"ca": "front-proxy-ca.crt"},  # a CA that did not sign the API server's certificate
        {"server_name": "not-kubernetes"},  # a name the certificate does not carry
    ],
)
def test_upstream_that_fails_verification_is_a_502_without_internals(
    pki: Path, emulator: Emulator, tmp_path: Path, upstream: dict[str, str]
) -> None:
    if "ca" in upstream:
        upstream = {"ca": str(pki / upstream["ca"])}
    before = len(emulator.requests())
    # The request path's own failure: with the cluster trust check on, the proxy would not
    # serve at all (503, tests/attacks/test_identity_config.py).
    upstream = {**upstream, "check_cluster_trust": False}
    proxy = start_proxy_for(pki, tmp_path, emulator.port, upstream=upstream)
    try:
        result = proxy.kubectl("get", "pods")
        assert result.returncode == 1
        status, headers, body = proxy.raw(
            "GET", "/api", [basic_header("alice", password_of("alice"))]
        )
    finally:
        proxy.process.stop()
    assert status == 502
    assert headers["Content-Type"] == "application/json"
    status_object = json.loads(body)
    assert status_object["kind"] == "Status" and status_object["code"] == 502
    text = body.decode()
    for internal in ("certificate", "verify", str(emulator.port), "127.0.0.1", "SSL", "mitmproxy"):
        assert internal not in text
    # No request got through: the TLS handshake itself was refused.
    assert emulator.requests()[before:] == []
    assert re.search(r"(?i)certificate verify failed|hostname mismatch", proxy.process.output())


NO_TRUST_CHECK = {"check_cluster_trust": False}  # else a 503 before any request is tried


def test_unreachable_upstream_is_a_502_status(pki: Path, tmp_path: Path) -> None:
    proxy = start_proxy_for(pki, tmp_path, free_port(), upstream=NO_TRUST_CHECK)
    try:
        status, _, body = proxy.raw("GET", "/api", [basic_header("alice", password_of("alice"))])
    finally:
        proxy.process.stop()
    assert status == 502
    assert json.loads(body)["message"] == "the Kubernetes API server could not be reached"


def test_unreachable_upstream_over_http2_is_a_json_status(pki: Path, tmp_path: Path) -> None:
    proxy = start_proxy_for(pki, tmp_path, free_port(), upstream=NO_TRUST_CHECK)
    client = proxy.h2()
    try:
        stream = client.request(
            "GET",
            "/api",
            [(n.lower(), v) for n, v in [basic_header("alice", password_of("alice"))]],
        )
        response = client.response(stream)
    finally:
        client.close()
        proxy.process.stop()
    # mitmproxy's own error head (text/html and its version in `server`) is replaced.
    assert response.headers == [(":status", "502"), ("content-type", "application/json"),
                                ("cache-control", "no-cache, private")]  # fmt: skip
    assert json.loads(response.data)["message"] == "the Kubernetes API server could not be reached"


def test_injected_fault_fails_closed(pki: Path, emulator: Emulator, tmp_path: Path) -> None:
    before = len(emulator.requests())
    proxy = start_proxy_for(
        pki, tmp_path, emulator.port, "-s", str(REPO / "tests/faults/break_identity.py"),
        upstream={"check_cluster_trust": False},  # so that no request at all reaches it
    )  # fmt: skip
    try:
        status, _, body = proxy.raw(
            "GET", "/api/v1/pods",
            [basic_header("alice", password_of("alice")), ("X-Remote-User", "admin")],
        )  # fmt: skip
    finally:
        proxy.process.stop()
    assert status == 500
    assert json.loads(body)["kind"] == "Status"
    assert emulator.requests()[before:] == []
    assert "injected fault" in proxy.process.output()


def test_mitmweb_runs_the_same_addon(pki: Path, emulator: Emulator, tmp_path: Path) -> None:
    web_port = free_port()
    proxy = start_proxy_for(
        pki, tmp_path, emulator.port,
        "--set", "web_open_browser=false", "--set", f"web_port={web_port}",
        tool="mitmweb",
    )  # fmt: skip
    try:
        assert proxy.whoami()["username"] == "alice"
        assert listening_ports(proxy.process.proc.pid) == {proxy.port, web_port}
    finally:
        proxy.process.stop()
