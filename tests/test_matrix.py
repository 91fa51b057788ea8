"""Issue 3's matrix: verb x protocol x HTTP version, real kubectl through the proxy.

Axes:
- verb: get, list, watch (`get pods -w`), `logs -f`, `exec -i` (stdin round trip, exit code),
  `attach -i`, `cp` both ways, `port-forward` with real bytes;
- protocol, for the upgrades: WebSocket (kubectl 1.32's default) or SPDY/3.1
  (`KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`, `KUBECTL_PORT_FORWARD_WEBSOCKETS=false`);
- kubectl -> proxy: h2 (the default) or HTTP/1.1. `DISABLE_HTTP2` turns h2 off in kubectl
  (client-go `k8s.io/apimachinery pkg/util/net/http.go` `SetTransportDefaults`);
  `GODEBUG=http2client=0` does not, since client-go configures `golang.org/x/net/http2` itself
  (test_kubectl_http_version_switches, against the emulator directly);
- proxy -> API server: h2 or HTTP/1.1 (`--disable-http2` on the emulator).

What each cell checks besides kubectl's output: the HTTP version of every request on both legs
(mitmdump's flow lines end in ` HTTP/2.0` for h2 clients; the emulator logs `http_version`),
and that the API server saw alice's identity from the proxy. The proxy offers upstream the
protocols the client offered (`addon.py` `tls_start_server`), so upstream is h2 only when both
kubectl and the API server speak it; upgrades always run on their own HTTP/1.1 connections, on
both legs, whatever the rest uses: client-go dials them without h2, and RFC 8441 (WebSocket over
h2) is implemented neither by kubectl nor by kube-apiserver.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.api_paths import ATTACH, EXEC, PODS, PORTFORWARD, SSR
from tests.support.configs import write_kubeconfig
from tests.support.harness import Emulator, Proxy, start_emulator, start_proxy_for
from tests.support.impersonation import SA, SA_TOKEN, impersonating_proxy
from tests.support.kubectl_http import CLIENT_ENV, VERSION, assert_identity
from tests.support.processes import KUBECTL, read_until
from tests.support.upgrades import (
    PORT_FORWARD_ENV,
    PROTOCOLS,
    REMOTE_COMMAND_ENV,
    TIMEOUT,
    assert_upgrade_as_alice,
    kubectl,
    read_forwarded_ports,
    talk,
    tree,
)
from tests.support.users import basic_header, password_of
from tests.support.waiting import wait_until

HTTP = [(client, upstream) for client in ("h2", "http1") for upstream in ("h2", "http1")]
HTTP_IDS = [f"kubectl-{c}-apiserver-{u}" for c, u in HTTP]
HTTP2_DISABLED = re.compile(
    rb"^I[\d :.]+ http\.go:\d+\] HTTP2 has been explicitly disabled\n", re.M
)
UPGRADES = re.compile(r"/(exec|attach|portforward)(\?|$)")
# mitmdump's flow line: "<client>: GET https://<server>/<path>[ HTTP/2.0]", HTTP/1.1 unsaid.
FLOW_LINE = re.compile(r"^\S+: [A-Z]+ https://[^/\s]+(/\S*?)(?: (HTTP/\S+))?$", re.M)


@dataclass
class Stack:
    emulator: Emulator
    proxy: Proxy


@pytest.fixture(scope="module")
def stacks(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Stack]]:
    """An API server with h2 and one without, each behind its own proxy."""
    started: dict[str, Stack] = {}
    try:
        for upstream, flags in (("h2", ()), ("http1", ("--disable-http2",))):
            workdir = tmp_path_factory.mktemp(f"matrix-{upstream}")
            emulator = start_emulator(pki, workdir, "-q", *flags)
            started[upstream] = Stack(emulator, start_proxy_for(pki, workdir, emulator.port))
        yield started
    finally:
        for stack in started.values():
            stack.proxy.process.stop()
            stack.emulator.process.stop()


@dataclass
class Cell:
    """One HTTP pairing: kubectl's version towards the proxy, the API server's h2 support."""

    stack: Stack
    client: str
    upstream: str
    env: dict[str, str]
    records_before: int
    output_before: int

    @property
    def expected_upstream(self) -> str:
        return "HTTP/2.0" if (self.client, self.upstream) == ("h2", "h2") else "HTTP/1.1"

    def records(self, path: str) -> list[dict[str, Any]]:
        """The API server's records since the cell started, for paths under `path`."""
        found = self.stack.emulator.requests()[self.records_before :]
        return [r for r in found if r["path"].split("?")[0].startswith(path)]

    def check_http_versions(self, upgrades: int = 0) -> None:
        """Every request of the cell, on both legs, used the expected HTTP version."""
        records = self.records(PODS)
        plain = [r["http_version"] for r in records if not UPGRADES.search(r["path"])]
        upgraded = [r["http_version"] for r in records if UPGRADES.search(r["path"])]
        assert plain and set(plain) == {self.expected_upstream}, plain
        assert upgraded == ["HTTP/1.1"] * upgrades
        for record in records:
            # Requests kubectl sent over h2 carry lower-case names (the proxy writes them so
            # for HTTP/2 clients); upgrades come on HTTP/1.1 connections.
            client_h2 = self.client == "h2" and not UPGRADES.search(record["path"])
            assert_identity(record, client_h2)

        # The proxy prints a flow once it ends; the last one can lag behind kubectl's exit.
        def flow_lines() -> tuple[str, list[tuple[str, str]]]:
            output = self.stack.proxy.process.output()[self.output_before :]
            flows = [
                (p, v or "HTTP/1.1") for p, v in FLOW_LINE.findall(output) if p.startswith(PODS)
            ]
            return output, flows

        wait_until(lambda: len(flow_lines()[1]) >= len(records), 5, lambda: flow_lines()[0])
        output, flows = flow_lines()
        # mitmdump shortens the paths (".../pods/…"): count versions, not upgrade paths.
        assert Counter(v for _, v in flows) == Counter(
            [VERSION[self.client]] * len(plain) + ["HTTP/1.1"] * upgrades
        ), output
        # Identity names are written lower-case for HTTP/2 already: mitmproxy, which would
        # lower-case them itself, logs nothing per header.
        assert "Lowercased" not in output


def kubectl_stderr(cell: Cell, stderr: bytes) -> bytes:
    """stderr without client-go's notice that DISABLE_HTTP2 took effect, which must be there
    exactly when kubectl was told to speak HTTP/1.1."""
    assert bool(HTTP2_DISABLED.search(stderr)) == (cell.client == "http1"), stderr
    return HTTP2_DISABLED.sub(b"", stderr)


@pytest.fixture(params=HTTP, ids=HTTP_IDS)
def cell(request: pytest.FixtureRequest, stacks: dict[str, Stack]) -> Cell:
    client, upstream = request.param
    stack = stacks[upstream]
    return Cell(
        stack,
        client,
        upstream,
        dict(CLIENT_ENV[client]),
        len(stack.emulator.requests()),
        len(stack.proxy.process.output()),
    )


def popen(cell: Cell, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return cell.stack.proxy.kubectl_running(*args, env={**cell.env, **(env or {})})


def stop(proc: subprocess.Popen[bytes]) -> bytes:
    """Kill a never-ending kubectl; what it wrote on stderr."""
    proc.kill()
    _, stderr = proc.communicate(timeout=TIMEOUT)
    return stderr


def wait_for_record(cell: Cell, path: str, query: str) -> dict[str, Any]:
    """The request a never-ending command made (logged as its response starts)."""
    found = wait_until(
        lambda: [r for r in cell.records(path) if query in r["path"]], TIMEOUT,
        f"no request for {path}?...{query}...",
    )  # fmt: skip
    return found[-1]


# -- plain requests ----------------------------------------------------------------------------


def test_get(cell: Cell) -> None:
    result = kubectl(cell.stack.proxy, "get", "pod", "nginx-1", "-o", "json", env=cell.env)
    assert result.returncode == 0, result.stderr
    pod = json.loads(result.stdout)
    assert (pod["kind"], pod["metadata"]["name"], pod["status"]["podIP"]) == (
        "Pod",
        "nginx-1",
        "10.244.0.11",
    )
    [record] = cell.records(f"{PODS}/nginx-1")
    assert record["status"] == 200
    cell.check_http_versions()


def test_list(cell: Cell) -> None:
    result = kubectl(cell.stack.proxy, "get", "pods", env=cell.env)
    assert result.returncode == 0, result.stderr
    rows = [line.split()[:3] for line in result.stdout.decode().splitlines()]
    assert rows == [["NAME", "READY", "STATUS"], ["nginx-1", "1/1", "Running"],
                    ["nginx-2", "1/1", "Running"]]  # fmt: skip
    [record] = cell.records(PODS)
    assert record["path"] == f"{PODS}?limit=500"
    cell.check_http_versions()


def test_watch(cell: Cell) -> None:
    proc = popen(cell, "get", "pods", "-w", "--request-timeout=20s")
    try:
        read_until(proc, b"nginx-2", timeout=TIMEOUT)
        watch = wait_for_record(cell, PODS, "watch=true")
        assert watch["status"] == 200
        assert proc.poll() is None  # still watching
    finally:
        stderr = stop(proc)
    assert kubectl_stderr(cell, stderr) == b""
    cell.check_http_versions()


def test_logs_follow(cell: Cell) -> None:
    proc = popen(cell, "logs", "-f", "nginx-1")
    try:
        out = read_until(proc, b"nginx-1 ready\n", timeout=TIMEOUT)
        assert out.endswith(b" nginx-1 started\n" + out.splitlines()[-1] + b"\n")
        record = wait_for_record(cell, f"{PODS}/nginx-1/log", "follow=true")
        assert record["path"] == f"{PODS}/nginx-1/log?container=nginx&follow=true"
        assert proc.poll() is None
    finally:
        stop(proc)
    cell.check_http_versions()


# -- upgrades ----------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_exec_stdin_round_trip_and_exit_code(cell: Cell, protocol: str) -> None:
    data = os.urandom(256 * 1024) + bytes(range(256))
    result = kubectl(cell.stack.proxy, "exec", "-i", "nginx-1", "--", "sh", "-c", "cat; exit 3",
                     env={**cell.env, **REMOTE_COMMAND_ENV[protocol]}, stdin=data)  # fmt: skip
    assert result.returncode == 3
    assert result.stdout == data
    assert kubectl_stderr(cell, result.stderr) == b"command terminated with exit code 3\n"
    [record] = cell.records(EXEC)
    subprotocol = "v5.channel.k8s.io" if protocol == "websocket" else "v4.channel.k8s.io"
    assert_upgrade_as_alice(record, protocol, subprotocol)
    cell.check_http_versions(upgrades=1)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_attach(cell: Cell, protocol: str) -> None:
    result = kubectl(cell.stack.proxy, "attach", "-i", "nginx-1", stdin=b"one\ntwo\n",
                     env={**cell.env, **REMOTE_COMMAND_ENV[protocol]})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"one\ntwo\n"
    [record] = cell.records(ATTACH)
    subprotocol = "v5.channel.k8s.io" if protocol == "websocket" else "v4.channel.k8s.io"
    assert_upgrade_as_alice(record, protocol, subprotocol)
    cell.check_http_versions(upgrades=1)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cp_both_ways(cell: Cell, protocol: str, tmp_path: Path) -> None:
    env = {**cell.env, **REMOTE_COMMAND_ENV[protocol]}
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_bytes(b"first file\n")
    (source / "sub" / "b.bin").write_bytes(os.urandom(40 * 1024))
    remote = f"/tmp/matrix-{cell.client}-{cell.upstream}-{protocol}"
    result = kubectl(cell.stack.proxy, "cp", str(source), f"nginx-1:{remote}", env=env)
    assert result.returncode == 0, result.stderr
    back = tmp_path / "back"
    result = kubectl(cell.stack.proxy, "cp", f"nginx-1:{remote}", str(back), env=env)
    assert result.returncode == 0, result.stderr
    assert tree(back) == tree(source)
    # To the pod: `test -d`, then `tar -xmf -`; back: `tar cf - ...`.
    records = cell.records(EXEC)
    assert [r["path"].split("command=")[1].split("&")[0] for r in records] == ["test", "tar", "tar"]
    assert all(r["status"] == 101 for r in records)
    cell.check_http_versions(upgrades=3)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_port_forward(cell: Cell, protocol: str) -> None:
    proc = popen(cell, "port-forward", "pod/nginx-1", ":80", ":7", env=PORT_FORWARD_ENV[protocol])
    try:
        ports = read_forwarded_ports(proc, 2)
        page = talk(ports[80], b"GET / HTTP/1.1\r\nHost: nginx\r\n\r\n")
        assert page.startswith(b"HTTP/1.1 200 OK\r\n")
        data = os.urandom(128 * 1024)
        assert talk(ports[7], data) == data
        assert proc.poll() is None
    finally:
        stderr = stop(proc)
    assert b"error" not in stderr.lower(), stderr
    [record] = cell.records(PORTFORWARD)
    subprotocol = "SPDY/3.1+portforward.k8s.io" if protocol == "websocket" else "portforward.k8s.io"
    assert_upgrade_as_alice(record, protocol, subprotocol)
    cell.check_http_versions(upgrades=1)


# -- the axes themselves -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "version"),
    [
        ({}, "HTTP/2.0"),
        ({"GODEBUG": "http2client=0"}, "HTTP/2.0"),
        ({"DISABLE_HTTP2": "1"}, "HTTP/1.1"),
    ],
    ids=["default", "GODEBUG-http2client-0-has-no-effect", "DISABLE_HTTP2"],
)
def test_kubectl_http_version_switches(
    stacks: dict[str, Stack], pki: Path, tmp_path: Path, env: dict[str, str], version: str
) -> None:
    # Straight to the h2-capable API server, anonymously (/version is open to everybody).
    emulator = stacks["h2"].emulator
    # Basic credentials, which kube-apiserver ignores: anonymous, and kubectl asks nothing.
    kubeconfig = write_kubeconfig(
        tmp_path / "kubeconfig",
        f"https://127.0.0.1:{emulator.port}",
        pki / "ca.crt",
        {"username": "nobody", "password": "x"},
    )
    before = len(emulator.requests())
    result = subprocess.run(
        [KUBECTL, "--kubeconfig", str(kubeconfig), "get", "--raw", "/version"],
        capture_output=True, timeout=TIMEOUT, env={**os.environ, **env},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["gitVersion"] == "v1.32.4"
    # The proxy's own /readyz checks may come in between.
    [record] = [r for r in emulator.requests()[before:] if r["path"] == "/version"]
    assert (record["http_version"], record["authentication"]["authenticator"]) == (
        version,
        "anonymous",
    )


def test_one_h2_connection_carries_100_concurrent_streams_multiplexed_upstream(
    stacks: dict[str, Stack],
) -> None:
    """50 watches open at once on one client connection, then 50 GETs beside them: the proxy
    carries all of them on one upstream h2 connection."""
    stack = stacks["h2"]
    before = len(stack.emulator.requests())
    client = stack.proxy.h2()
    auth = [(name.lower(), value) for name, value in [basic_header("alice", password_of("alice"))]]
    try:
        watches = [client.request("GET", f"{PODS}?watch=true", auth) for _ in range(50)]
        client.wait(
            lambda: all(client.responses[w].data.count(b"\n") == 2 for w in watches), timeout=20
        )
        # All 50 are open at the same time, each with its own events.
        assert not any(client.responses[w].ended for w in watches)
        # mitmproxy allows 100 concurrent streams per client connection: 50 more.
        gets = [client.request("GET", f"{PODS}/nginx-{1 + i % 2}", auth) for i in range(50)]
        responses = [client.response(g) for g in gets]
        for w in watches:
            client.reset(w)
    finally:
        client.close()
    assert [r.status for r in responses] == [200] * 50
    assert [json.loads(r.data)["metadata"]["name"] for r in responses] == [
        f"nginx-{1 + i % 2}" for i in range(50)
    ]
    records = [r for r in stack.emulator.requests()[before:] if r["path"].startswith(PODS)]
    assert len(records) == 100
    assert {r["http_version"] for r in records} == {"HTTP/2.0"}
    assert len({r["remote_addr"] for r in records}) == 1


def test_impersonation_mode_keeps_http1_upstream(pki: Path, tmp_path: Path) -> None:
    # The service-account token is written into HTTP/1 request heads only
    # (identity/service_account.py), so the proxy offers upstream http/1.1 alone, whatever kubectl
    # and the API server speak.
    (tmp_path / "tokens.csv").write_text(f"{SA_TOKEN},{SA},sa-uid\n")
    emulator = start_emulator(
        pki, tmp_path, "-q", "--token-auth-file", str(tmp_path / "tokens.csv")
    )
    try:
        proxy = impersonating_proxy(pki, tmp_path, emulator.port)
        try:
            assert proxy.whoami()["username"] == "alice"
            # kubectl -> proxy was h2 (mitmdump's flow line; the path is shortened).
            proxy.process.wait_for(r"\S+: POST https://\S+/apis/authentication\S+ HTTP/2\.0\n")
        finally:
            proxy.process.stop()
    finally:
        emulator.process.stop()
    [record] = [r for r in emulator.requests() if r["path"] == SSR]
    assert (record["alpn"], record["http_version"]) == ("http/1.1", "HTTP/1.1")
    assert record["authentication"]["user"]["username"] == SA
    assert record["impersonated_user"]["username"] == "alice"
