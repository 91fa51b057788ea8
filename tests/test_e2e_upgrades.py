"""Through the proxy: kubectl exec, attach, cp and port-forward, over WebSocket and SPDY.

kubectl 1.32 speaks WebSocket (`v5.channel.k8s.io`; port-forward tunnels SPDY inside
`SPDY/3.1+portforward.k8s.io`) unless `KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false` /
`KUBECTL_PORT_FORWARD_WEBSOCKETS=false`, which select plain SPDY/3.1 (`k8s.io/kubectl
pkg/cmd/util/helpers.go`). When the WebSocket upgrade fails kubectl silently retries with SPDY
(`FallbackExecutor`), so every test also checks in the API server's request log which protocol was
really used. The emulator implements both protocols (tests/emulator/remotecommand.py,
portforward.py, spdy.py, websocket.py); the raw-socket tests below check the upgraded bytes and
the identity headers without kubectl in the way.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import pytest

from tests.emulator import EmulatorServer, spdy, websocket
from tests.support.api_paths import ATTACH, EXEC, PORTFORWARD
from tests.support.emulator_pki import kubeadm_config
from tests.support.harness import Emulator, Proxy
from tests.support.upgrades import (
    PORT_FORWARD_ENV,
    PROTOCOLS,
    REMOTE_COMMAND_ENV,
    TIMEOUT,
    RawTLS,
    assert_upgrade_as_alice,
    kubectl,
    read_forwarded_ports,
    talk,
    tree,
    upgrade_records,
)
from tests.support.users import basic_header, password_of

SPOOFS = [
    ("X-Remote-User", "admin"),
    ("x-remote-group", "system:masters"),
    ("X-REMOTE-UID", "0"),
    ("X-Remote-Extra-Scopes", "all"),
]


# -- kubectl exec --------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_exec_runs_as_alice_with_the_proxys_identity(
    proxy: Proxy, emulator: Emulator, protocol: str
) -> None:
    before = len(emulator.requests())
    result = kubectl(
        proxy, "exec", "nginx-1", "--", "echo", "hello", "world", env=REMOTE_COMMAND_ENV[protocol]
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, b"hello world\n", b"")
    # One upgrade, of the chosen kind: no silent fallback from WebSocket to SPDY.
    [record] = upgrade_records(emulator, before, EXEC)
    assert record["path"] == f"{EXEC}?command=echo&command=hello&command=world&container=nginx" + (
        "&stderr=true&stdout=true"
    )
    subprotocol = "v5.channel.k8s.io" if protocol == "websocket" else "v4.channel.k8s.io"
    assert_upgrade_as_alice(record, protocol, subprotocol)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_exec_stdin_round_trips_binary_data(
    proxy: Proxy, emulator: Emulator, protocol: str
) -> None:
    # Many 32 KiB WebSocket messages or SPDY frames both ways at once (more than the socket
    # buffers on the way hold), and every byte value.
    data = os.urandom(8 << 20) + bytes(range(256))
    before = len(emulator.requests())
    result = kubectl(proxy, "exec", "-i", "nginx-1", "--", "cat", env=REMOTE_COMMAND_ENV[protocol],
                     stdin=data)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == data
    [record] = upgrade_records(emulator, before, EXEC)
    assert "stdin=true" in record["path"]
    assert record["status"] == 101


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_exec_exit_code_and_stderr_reach_kubectl(proxy: Proxy, protocol: str) -> None:
    script = "echo to-stdout; echo to-stderr >&2; exit 3"
    result = kubectl(proxy, "exec", "nginx-1", "--", "sh", "-c", script,
                     env=REMOTE_COMMAND_ENV[protocol])  # fmt: skip
    assert result.returncode == 3
    assert result.stdout == b"to-stdout\n"
    assert result.stderr == b"to-stderr\ncommand terminated with exit code 3\n"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_exec_of_a_missing_command_is_an_internal_error(proxy: Proxy, protocol: str) -> None:
    result = kubectl(proxy, "exec", "nginx-1", "--", "no-such-tool",
                     env=REMOTE_COMMAND_ENV[protocol])  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith(b"error: Internal error occurred: ")
    assert b'exec: "no-such-tool": executable file not found in $PATH' in result.stderr


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_attach_sends_stdin_to_the_main_process(
    proxy: Proxy, emulator: Emulator, protocol: str
) -> None:
    # The emulated main process echoes its stdin; the session ends when kubectl closes stdin.
    before = len(emulator.requests())
    result = kubectl(proxy, "attach", "-i", "nginx-1", env=REMOTE_COMMAND_ENV[protocol],
                     stdin=b"line one\nline two\n")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"line one\nline two\n"
    assert result.stderr == b"If you don't see a command prompt, try pressing enter.\n"
    [record] = upgrade_records(emulator, before, ATTACH)
    assert record["path"] == f"{ATTACH}?container=nginx&stderr=true&stdin=true&stdout=true"
    subprotocol = "v5.channel.k8s.io" if protocol == "websocket" else "v4.channel.k8s.io"
    assert_upgrade_as_alice(record, protocol, subprotocol)


def test_refused_websocket_upgrade_falls_back_to_spdy(proxy: Proxy, emulator: Emulator) -> None:
    # The API server answers 400 before upgrading; kubectl then tries SPDY (FallbackExecutor),
    # which is refused the same way, and shows that error.
    before = len(emulator.requests())
    result = kubectl(proxy, "exec", "-c", "sidecar", "nginx-1", "--", "true",
                     env=REMOTE_COMMAND_ENV["websocket"])  # fmt: skip
    assert result.returncode == 1
    assert b"container sidecar is not valid for pod nginx-1" in result.stderr
    records = upgrade_records(emulator, before, EXEC)
    assert [(r["method"], r["status"]) for r in records] == [("GET", 400), ("POST", 400)]


def test_exec_with_a_wrong_password_never_reaches_the_api_server(
    proxy: Proxy, emulator: Emulator
) -> None:
    before = len(emulator.requests())
    result = kubectl(proxy, "exec", "nginx-1", "--", "true", env=REMOTE_COMMAND_ENV["websocket"],
                     password="wrong")  # fmt: skip
    assert result.returncode == 1
    assert b"Unauthorized" in result.stderr
    assert emulator.requests()[before:] == []


# -- kubectl cp ----------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cp_to_and_from_a_pod(
    proxy: Proxy, emulator: Emulator, tmp_path: Path, protocol: str
) -> None:
    env = REMOTE_COMMAND_ENV[protocol]
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_bytes(b"first file\n")
    (source / "sub" / "b.bin").write_bytes(os.urandom(70 * 1024))
    remote = f"/tmp/cp-{protocol}"

    before = len(emulator.requests())
    result = kubectl(proxy, "cp", str(source), f"nginx-1:{remote}", env=env)
    assert result.returncode == 0, result.stderr
    # kubectl ran `test -d` (not a directory yet: copy as that name), then `tar -xmf -`.
    commands = [r["path"].split("?")[1] for r in upgrade_records(emulator, before, EXEC)]
    assert commands == [
        f"command=test&command=-d&command=%2Ftmp%2Fcp-{protocol}&container=nginx&stderr=true"
        "&stdout=true",
        "command=tar&command=-xmf&command=-&command=-C&command=%2Ftmp&container=nginx"
        "&stderr=true&stdin=true&stdout=true",
    ]
    shown = kubectl(proxy, "exec", "nginx-1", "--", "cat", f"{remote}/sub/b.bin", env=env)
    assert shown.stdout == (source / "sub" / "b.bin").read_bytes()

    back = tmp_path / "back"
    result = kubectl(proxy, "cp", f"nginx-1:{remote}", str(back), env=env)
    assert result.returncode == 0, result.stderr
    # GNU tar's warning on stderr, which kubectl cp prints on its stdout.
    assert result.stdout == b"tar: Removing leading `/' from member names\n"
    assert tree(back) == tree(source)


# -- kubectl port-forward ------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_port_forward(proxy: Proxy, emulator: Emulator, protocol: str) -> None:
    before = len(emulator.requests())
    proc = proxy.kubectl_running(
        "port-forward", "pod/nginx-1", ":80", ":7", env=PORT_FORWARD_ENV[protocol]
    )
    try:
        ports = read_forwarded_ports(proc, 2)
        page = talk(ports[80], b"GET / HTTP/1.1\r\nHost: nginx\r\n\r\n")
        assert page.startswith(b"HTTP/1.1 200 OK\r\n")
        assert page.endswith(b"<h1>Welcome to nginx!</h1></body></html>\n")
        data = os.urandom(256 * 1024)
        assert talk(ports[7], data) == data
        assert proc.poll() is None
    finally:
        proc.kill()
        _, stderr = proc.communicate(timeout=TIMEOUT)
    assert b"error" not in stderr.lower(), stderr
    [record] = upgrade_records(emulator, before, PORTFORWARD)
    subprotocol = "SPDY/3.1+portforward.k8s.io" if protocol == "websocket" else "portforward.k8s.io"
    assert_upgrade_as_alice(record, protocol, subprotocol)


# -- the upgraded bytes, without kubectl ---------------------------------------------------------


def test_websocket_messages_pass_the_proxy_unchanged(proxy: Proxy, emulator: Emulator) -> None:
    before = len(emulator.requests())
    conn = RawTLS(proxy.port, proxy.pki / "proxy-ca.crt")
    try:
        key = websocket.new_key()
        extra = [basic_header("alice", password_of("alice")), *SPOOFS,
                 ("Sec-WebSocket-Protocol", "v5.channel.k8s.io")]  # fmt: skip
        target = f"{EXEC}?command=cat&stdin=true&stdout=true&stderr=true"
        conn.sock.sendall(websocket.client_request("GET", target, conn.host, key, extra))
        status, fields = conn.response_head()
        assert status == 101
        assert fields["Sec-WebSocket-Accept"] == websocket.accept_key(key)
        assert fields["Sec-WebSocket-Protocol"] == "v5.channel.k8s.io"
        parser = websocket.FrameParser(from_client=False)
        events: list[websocket.Event] = []
        # stdin in two messages, then v5's close signal for channel 0 (stdin EOF).
        conn.sock.sendall(
            websocket.client_frame(websocket.Opcode.BINARY, b"\x00first ")
            + websocket.client_frame(websocket.Opcode.PING, b"are you there")
            + websocket.client_frame(websocket.Opcode.BINARY, b"\x00second\n")
            + websocket.client_frame(websocket.Opcode.BINARY, b"\xff\x00")
        )
        while not any(isinstance(e, websocket.Control) and e.opcode == 8 for e in events):
            events += parser.feed(conn.take())
        conn.sock.sendall(
            websocket.client_frame(websocket.Opcode.CLOSE, websocket.close_payload(1000))
        )
    finally:
        conn.close()
    messages = [e.data for e in events if isinstance(e, websocket.Message)]
    # First the empty "connection established" message on stdout, then what cat echoed (one
    # message per read, so possibly joined), then the Status on channel 3.
    assert messages[0] == b"\x01"
    assert messages[-1] == b'\x03{"metadata":{},"status":"Success"}'
    assert all(m[:1] == b"\x01" for m in messages[1:-1])
    assert b"".join(m[1:] for m in messages[1:-1]) == b"first second\n"
    controls = [(e.opcode, e.payload) for e in events if isinstance(e, websocket.Control)]
    assert controls == [
        (websocket.Opcode.PONG, b"are you there"),
        (websocket.Opcode.CLOSE, websocket.close_payload(1000)),
    ]
    [record] = upgrade_records(emulator, before, EXEC)
    assert_upgrade_as_alice(record, "websocket", "v5.channel.k8s.io")


def test_spdy_frames_pass_the_proxy_unchanged(proxy: Proxy, emulator: Emulator) -> None:
    before = len(emulator.requests())
    conn = RawTLS(proxy.port, proxy.pki / "proxy-ca.crt")
    codec = spdy.ClientCodec()
    try:
        script = "command=echo+out%3B+echo+err+%3E%262"
        target = f"{EXEC}?command=sh&command=-c&{script}&stdout=true&stderr=true"
        head = (
            f"POST {target} HTTP/1.1\r\nHost: {conn.host}\r\nContent-Length: 0\r\n"
            "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
            "X-Stream-Protocol-Version: v5.channel.k8s.io\r\n"
            "X-Stream-Protocol-Version: v4.channel.k8s.io\r\n"
            + "".join(f"{n}: {v}\r\n" for n, v in [basic_header("alice", password_of("alice")),
                                                   *SPOOFS])
            + "\r\n"
        )  # fmt: skip
        conn.sock.sendall(head.encode())
        status, fields = conn.response_head()
        assert status == 101
        assert fields["Upgrade"] == "SPDY/3.1"
        assert fields["X-Stream-Protocol-Version"] == "v4.channel.k8s.io"
        # The client opens error, stdout and stderr (`tools/remotecommand/v2.go`) and pings.
        conn.sock.sendall(
            codec.syn_stream(1, [("streamType", "error")], fin=True)
            + codec.syn_stream(3, [("streamType", "stdout")], fin=True)
            + codec.syn_stream(5, [("streamType", "stderr")], fin=True)
            + spdy.control_frame(spdy.FrameType.PING, 0, struct.pack("!I", 1))
        )
        frames: list[spdy.RawFrame] = []
        while not any(f.control and f.kind == spdy.FrameType.GOAWAY for f in frames):
            frames += codec.reader.feed(conn.take())
    finally:
        conn.close()
    replies = [f for f in frames if f.control and f.kind == spdy.FrameType.SYN_REPLY]
    assert [struct.unpack("!I", f.payload[:4])[0] for f in replies] == [1, 3, 5]
    assert all(codec.inflate.decompress(f.payload[4:]) == [] for f in replies)
    pings = [f.payload for f in frames if f.control and f.kind == spdy.FrameType.PING]
    assert pings == [struct.pack("!I", 1)]
    data = [(f.kind, f.flags, f.payload) for f in frames if not f.control]
    assert data == [
        (3, 0, b"out\n"),
        (5, 0, b"err\n"),
        (1, 0, b'{"metadata":{},"status":"Success"}'),
        (3, spdy.FLAG_FIN, b""),
        (5, spdy.FLAG_FIN, b""),
        (1, spdy.FLAG_FIN, b""),
    ]
    [goaway] = [f for f in frames if f.control and f.kind == spdy.FrameType.GOAWAY]
    assert goaway.payload == struct.pack("!II", 5, 0)
    [record] = upgrade_records(emulator, before, EXEC)
    assert_upgrade_as_alice(record, "spdy", "v4.channel.k8s.io")


# -- the API server refuses unauthenticated upgrades ---------------------------------------------

WS_EXEC = f"{EXEC}?command=echo&command=x&stdout=true"


def _ws_upgrade(port: int, *extra: tuple[str, str]) -> tuple[int, dict[str, str], bytes]:
    conn = RawTLS(port, None, server_name="kubernetes")
    try:
        key = websocket.new_key()
        offer = ("Sec-WebSocket-Protocol", "v5.channel.k8s.io")
        conn.sock.sendall(websocket.client_request("GET", WS_EXEC, conn.host, key, [offer, *extra]))
        status, fields = conn.response_head()
        return status, fields, conn.body(fields)
    finally:
        conn.close()


def _spdy_upgrade(port: int, *extra: tuple[str, str]) -> tuple[int, dict[str, str], bytes]:
    conn = RawTLS(port, None, server_name="kubernetes")
    try:
        lines = [f"POST {WS_EXEC} HTTP/1.1", f"Host: {conn.host}", "Content-Length: 0",
                 "Connection: Upgrade", "Upgrade: SPDY/3.1",
                 "X-Stream-Protocol-Version: v4.channel.k8s.io",
                 *(f"{n}: {v}" for n, v in extra)]  # fmt: skip
        conn.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        status, fields = conn.response_head()
        return status, fields, conn.body(fields)
    finally:
        conn.close()


@pytest.mark.parametrize("upgrade", [_ws_upgrade, _spdy_upgrade], ids=["websocket", "spdy"])
def test_api_server_ignores_identity_headers_without_the_proxy_certificate(
    emulator: Emulator, upgrade: Any
) -> None:
    # Straight to the API server, no client certificate: the headers are not trusted, the
    # request is anonymous, and anonymous may not exec.
    before = len(emulator.requests())
    status, fields, body = upgrade(emulator.port, ("X-Remote-User", "alice"),
                                   ("X-Remote-Group", "system:masters"))  # fmt: skip
    verb = "get" if upgrade is _ws_upgrade else "create"
    assert status == 403
    assert fields["Content-Type"] == "application/json"
    assert (
        f'"message":"pods \\"nginx-1\\" is forbidden: User \\"system:anonymous\\" cannot {verb}'
        ' resource \\"pods/exec\\" in API group \\"\\" in the namespace \\"default\\""'
    ).encode() in body
    [record] = upgrade_records(emulator, before, EXEC)
    assert record["status"] == 403
    assert record["authentication"]["authenticator"] == "anonymous"


def test_api_server_without_anonymous_auth_answers_401_to_upgrades(pki: Path) -> None:
    config = kubeadm_config(pki, client_ca_file=None, anonymous_auth=False)
    with EmulatorServer(config) as server:
        for upgrade in (_ws_upgrade, _spdy_upgrade):
            status, _, body = upgrade(server.port, ("X-Remote-User", "alice"))
            assert status == 401
            assert b'"reason":"Unauthorized","code":401' in body
        assert [r["status"] for r in server.records()] == [401, 401]
        assert all(r["authentication"]["user"] is None for r in server.records())
