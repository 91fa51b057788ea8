"""exec and attach over the two streaming protocols kubectl 1.32 speaks.

attach is exec's twin on the wire (`/attach` instead of `/exec`, no `command`; the apiserver's
`AttachREST` and the kubelet's `ServeAttach` use the same stream handling); only what runs differs.

**WebSocket, `v5.channel.k8s.io`** (kubectl's default since 1.30; `k8s.io/client-go
tools/remotecommand/websocket.go`), answered as kube-apiserver's StreamTranslatorHandler does
(`k8s.io/apiserver pkg/util/proxy/streamtranslator.go`, `websocket.go`, on `wsstream.Conn`):

- only `v5.channel.k8s.io` is accepted; channels 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize
  (`k8s.io/apimachinery pkg/util/remotecommand/constants.go`);
- every binary message starts with its channel byte; `[255, N]` from the client closes channel
  N (stdin EOF), which is what v5 adds (`wsstream/conn.go` `handle`);
- right after the upgrade the server sends an empty message on the lowest writable channel;
- at the end it writes the `metav1.Status` as compact JSON on channel 3 and closes the WebSocket
  with 1000; the client reads every channel until that normal closure
  (`readDemuxLoop`), then decodes channel 3 with `errorDecoderV4`: Success, or Failure with
  reason NonZeroExitCode and a cause {reason: ExitCode, message: "N"} gives exit code N.

**SPDY/3.1** (`KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`; `tools/remotecommand/spdy.go`): a POST
with `Upgrade: SPDY/3.1` and `X-Stream-Protocol-Version` v5, v4, v3, v2, `channel.k8s.io`. The
apiserver proxies it to the kubelet, whose handler is mirrored here
(`k8s.io/kubelet pkg/cri/streaming/remotecommand/httpstream.go`, `exec.go`): `httpstream.Handshake`
picks the first client protocol the kubelet supports (v4, v3, v2, v1: so v4), the 101 carries it
in `X-Stream-Protocol-Version`, the client opens one SPDY stream per channel (header `streamType`:
error, stdin, stdout, stderr, resize; `tools/remotecommand/v2.go`, `v3.go`), and the status JSON
goes on the error stream. Only v4 is implemented: the emulator refuses older protocols with the
handshake's 403.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import gojson, http11, spdy, websocket
from .container import ExecFailed, ExecIO, Reader, TerminalInput
from .pipe import Pipe
from .requestheader import Header
from .tunnel import Hijack, Tunnel

STREAM_PROTOCOL_V5 = "v5.channel.k8s.io"
STREAM_PROTOCOL_V4 = "v4.channel.k8s.io"
# The kubelet's `remotecommandconsts.SupportedStreamingProtocols` is v4, v3, v2, v1; this
# emulator implements v4 only.
SPDY_SERVER_PROTOCOLS = (STREAM_PROTOCOL_V4,)

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
# `DefaultStreamCreationTimeout` (apimachinery remotecommand constants).
STREAM_CREATION_TIMEOUT = 30.0
# How long the server waits for the client's own close after saying goodbye.
LINGER = 5.0

Runner = Callable[[list[str], ExecIO], int]


@dataclass(frozen=True)
class ExecOptions:
    """`core/v1 PodExecOptions` from the query string."""

    command: tuple[str, ...]
    container: str
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool


def query_bool(query: Mapping[str, Sequence[str]], name: str) -> bool:
    """`Convert_Slice_string_To_bool` (`k8s.io/apimachinery pkg/runtime/conversion.go`):
    absent, "0" or "false" (any case) is false, anything else true."""
    values = query.get(name)
    if not values:
        return False
    return not (values[0] == "0" or values[0].lower() == "false")


def exec_options(query: Mapping[str, Sequence[str]]) -> ExecOptions:
    return ExecOptions(
        command=tuple(query.get("command", [])),
        container=(query.get("container") or [""])[0],
        stdin=query_bool(query, "stdin"),
        stdout=query_bool(query, "stdout"),
        stderr=query_bool(query, "stderr"),
        tty=query_bool(query, "tty"),
    )


# -- status objects ----------------------------------------------------------------------------


def success_status() -> dict[str, Any]:
    """`json.Marshal(metav1.Status{Status: Success})`: empty TypeMeta and ListMeta."""
    return {"metadata": {}, "status": "Success"}


def exit_code_status(code: int, detail: str) -> dict[str, Any]:
    """The NonZeroExitCode Status (kubelet `exec.go` `ServeExec`, apiserver
    `streamtranslator.go` `codeExitToStatusError`): `detail` is the wrapped error's text."""
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: {detail}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def internal_error_status(message: str) -> dict[str, Any]:
    """`apierrors.NewInternalError(err)` (`k8s.io/apimachinery pkg/api/errors/errors.go`)."""
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"Internal error occurred: {message}",
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    }


def _go_list(argv: Sequence[str]) -> str:
    """A []string formatted with %v."""
    return "[" + " ".join(argv) + "]"


def run_to_status(
    runner: Runner, argv: list[str], io_: ExecIO, *, translated: bool
) -> dict[str, Any]:
    """Run the command and describe the outcome as the server reports it.

    The runtime's own error for a non-zero exit is containerd's (`internal/cri/server/
    streaming.go`: "error executing command [argv], exit code N"). Over WebSocket the apiserver
    translates: its SPDY client turns the kubelet's Status into "command terminated with exit
    code N" (`errorDecoderV4`) before re-wrapping it, and an InternalError message gets wrapped a
    second time.
    """
    try:
        code = runner(argv, io_)
    except ExecFailed as e:
        message = f"error executing command in container: failed to exec in container: {e}"
        if translated:
            message = f"Internal error occurred: {message}"
        return internal_error_status(message)
    if code == 0:
        return success_status()
    if translated:
        return exit_code_status(code, f"command terminated with exit code {code}")
    return exit_code_status(code, f"error executing command {_go_list(argv)}, exit code {code}")


def command_stdin(stdin: Reader | None, opts: ExecOptions) -> Reader | None:
    """The command's stdin: through the pty's line discipline when kubectl asked for a TTY
    (the kubelet's runtime then starts the process on a pty, `exec.go` `ServeExec`)."""
    return TerminalInput(stdin) if opts.tty and stdin is not None else stdin


def status_bytes(status: Mapping[str, Any]) -> bytes:
    """`json.Marshal`: compact, no trailing newline."""
    return gojson.dumps(status).encode("utf-8")


# -- WebSocket v5 ------------------------------------------------------------------------------


class _ChannelWriter:
    def __init__(self, ws: websocket.ServerConnection, channel: int) -> None:
        self._ws = ws
        self._channel = channel

    def write(self, data: bytes, /) -> None:
        for i in range(0, len(data), 32 * 1024):
            self._ws.send(bytes([self._channel]) + data[i : i + 32 * 1024])


class ChannelSession:
    """The server side of `v5.channel.k8s.io` on one WebSocket."""

    def __init__(self, tunnel: Tunnel, opts: ExecOptions, on_resize: Callable[[int, int], None]):
        self.opts = opts
        self.stdin = Pipe()
        if not opts.stdin:
            self.stdin.close()  # an IgnoreChannel reads as EOF
        self._on_resize = on_resize
        self._resize_buffer = b""
        self.ws = websocket.ServerConnection(tunnel, self._message, self.stdin.close, linger=LINGER)

    def _message(self, message: websocket.Message) -> None:
        data = message.data
        if not data:
            return
        if data[0] == CLOSE:
            if len(data) != 2:
                # `handle` stops reading on a malformed close signal.
                self.ws.close(websocket.CLOSE_PROTOCOL_ERROR)
                return
            if data[1] == STDIN:
                self.stdin.close()
            return
        channel, payload = data[0], data[1:]
        if channel == STDIN and self.opts.stdin:
            self.stdin.write(payload)
        elif channel == RESIZE:
            self._resize(payload)
        # Frames for other channels are ignored, as IgnoreChannel/WriteChannel do.

    def _resize(self, payload: bytes) -> None:
        self._resize_buffer = decode_sizes(self._resize_buffer + payload, self._on_resize)

    def writer(self, channel: int) -> _ChannelWriter:
        return _ChannelWriter(self.ws, channel)


def websocket_exec(
    method: str,
    headers: Sequence[Header],
    opts: ExecOptions,
    runner: Runner,
    on_resize: Callable[[int, int], None] = lambda w, h: None,
) -> Hijack:
    """The hijacked answer to a WebSocket exec request."""
    if websocket.handshake_problem(method, headers) is not None:
        return Hijack(websocket.bare_refusal(400))
    if STREAM_PROTOCOL_V5 not in websocket.subprotocols(headers):
        # x/net/websocket's Handshake hook refused every offered subprotocol.
        return Hijack(websocket.bare_refusal(403))
    key = next(v for n, v in headers if n.lower() == "sec-websocket-key")

    def run(tunnel: Tunnel) -> None:
        session = ChannelSession(tunnel, opts, on_resize)
        hangup = threading.Event()
        # "Send an empty message to the lowest writable channel" (apiserver websocket.go).
        first = STDOUT if opts.stdout else STDERR if opts.stderr else ERROR
        session.ws.send(bytes([first]))

        def execute() -> None:
            io_ = ExecIO(
                command_stdin(session.stdin if opts.stdin else None, opts),
                session.writer(STDOUT) if opts.stdout else None,
                session.writer(STDERR) if opts.stderr and not opts.tty else None,
                hangup,
            )
            status = run_to_status(runner, list(opts.command), io_, translated=True)
            session.writer(ERROR).write(status_bytes(status))
            session.ws.close(websocket.CLOSE_NORMAL)

        worker = threading.Thread(target=execute, name="emulator-exec-ws", daemon=True)
        worker.start()
        tunnel.run(session.ws)
        session.stdin.close()
        hangup.set()

    return Hijack(websocket.switching_protocols(key, STREAM_PROTOCOL_V5), run)


# -- SPDY v4 -------------------------------------------------------------------------------------


def _comma_values(headers: Sequence[Header], name: str) -> list[str]:
    """`commaSeparatedHeaderValues` over every line of the header."""
    folded = name.lower()
    return [
        p.strip(" ")
        for n, v in headers
        if n.lower() == folded
        for p in v.split(",")
        if p.strip(" ")
    ]


def go_http_error(code: int, message: str, extra: Sequence[Header] = ()) -> bytes:
    """`http.Error`: text/plain, nosniff, the message and a newline (Go's header order)."""
    body = (message + "\n").encode("utf-8")
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("X-Content-Type-Options", "nosniff"),
        *extra,
    ]
    return http11.response_head(code, headers, content_length=len(body), close=True) + body


def spdy_handshake(
    headers: Sequence[Header], server_protocols: Sequence[str]
) -> tuple[str, bytes | None]:
    """`httpstream.Handshake` then `responseUpgrader.UpgradeResponse`'s header check.

    Returns the negotiated protocol and None, or "" and the complete refusal.
    """
    if not any(n.lower() == "x-stream-protocol-version" for n, _ in headers):
        # len(req.Header): distinct names, Host excluded (Go keeps it in req.Host).
        names = {n.lower() for n, _ in headers} - {"host"}
        message = (
            "unable to upgrade: header X-Stream-Protocol-Version does not exist in request"
            f" with {len(names)} headers"
        )
        return "", go_http_error(400, message)
    client = _comma_values(headers, "X-Stream-Protocol-Version")
    if not client:
        values = [v for n, v in headers if n.lower() == "x-stream-protocol-version"]
        message = (
            f"unable to upgrade: header X-Stream-Protocol-Version contains {_go_list(values)},"
            " but no valid protocols"
        )
        return "", go_http_error(400, message)
    protocol = next((p for p in client if p in server_protocols), "")
    if not protocol:
        message = (
            "unable to upgrade: unable to negotiate protocol: client supports"
            f" {_go_list(client)}, server accepts {_go_list(server_protocols)}"
        )
        accepted = [("X-Accepted-Stream-Protocol-Versions", p) for p in server_protocols]
        return "", go_http_error(403, message, accepted)
    connection = ",".join(v for n, v in headers if n.lower() == "connection").lower()
    upgrade = ",".join(v for n, v in headers if n.lower() == "upgrade").lower()
    if "upgrade" not in connection or "spdy/3.1" not in upgrade:
        return "", go_http_error(400, "unable to upgrade: missing upgrade headers in request")
    return protocol, None


def spdy_switching_protocols(protocol: str) -> bytes:
    """The kubelet's 101 as Go's net/http writes it: sorted handler headers, then Date."""
    return http11.response_head(
        101,
        [
            ("Connection", "Upgrade"),
            ("Upgrade", "SPDY/3.1"),
            ("X-Stream-Protocol-Version", protocol),
        ],
        content_length=None,
        close=False,
    )


class _StreamWriter:
    def __init__(self, stream: spdy.Stream) -> None:
        self._stream = stream

    def write(self, data: bytes, /) -> None:
        self._stream.write(data)


def spdy_exec(
    headers: Sequence[Header],
    opts: ExecOptions,
    runner: Runner,
    on_resize: Callable[[int, int], None] = lambda w, h: None,
) -> Hijack:
    """The hijacked answer to a SPDY exec request (the kubelet's `ServeExec`)."""
    protocol, refusal = spdy_handshake(headers, SPDY_SERVER_PROTOCOLS)
    if refusal is not None:
        return Hijack(refusal)
    stderr_wanted = opts.stderr and not opts.tty  # `NewOptions`: tty bypasses stderr
    expected = 1 + opts.stdin + opts.stdout + stderr_wanted + opts.tty

    def run(tunnel: Tunnel) -> None:
        streams: dict[str, spdy.Stream] = {}
        ready = threading.Event()

        def on_open(stream: spdy.Stream) -> None:
            kind = stream.header("streamType")
            if kind in ("error", "stdin", "stdout", "stderr", "resize") and kind not in streams:
                streams[kind] = stream
            if len(streams) == expected:
                ready.set()

        session = spdy.Session(tunnel, lambda _s: True, ready.set, on_open=on_open)

        def execute() -> None:
            if not ready.wait(STREAM_CREATION_TIMEOUT) or len(streams) < expected:
                # "timed out waiting for client to create streams"
                tunnel.close()
                return
            resize = streams.get("resize")
            if resize is not None:
                threading.Thread(
                    target=_read_resizes, args=(resize, on_resize), daemon=True
                ).start()
            io_ = ExecIO(
                command_stdin(streams.get("stdin"), opts),
                _StreamWriter(streams["stdout"]) if "stdout" in streams else None,
                _StreamWriter(streams["stderr"]) if "stderr" in streams else None,
                session.closed,
            )
            status = run_to_status(runner, list(opts.command), io_, translated=False)
            # v4WriteStatusFunc writes the JSON for success too.
            streams["error"].write(status_bytes(status))
            # The kubelet's deferred conn.Close() resets what is still open and sends GOAWAY;
            # closing with FIN first hands the client clean EOFs.
            for kind in ("stdout", "stderr", "error"):
                if kind in streams:
                    streams[kind].close()
            for stream in streams.values():
                if not stream.remote_closed:
                    stream.reset()
            session.goaway()
            tunnel.close(linger=LINGER)

        worker = threading.Thread(target=execute, name="emulator-exec-spdy", daemon=True)
        worker.start()
        tunnel.run(session)
        for stream in streams.values():
            stream.inbound.close()

    return Hijack(spdy_switching_protocols(protocol), run)


def _read_resizes(stream: spdy.Stream, on_resize: Callable[[int, int], None]) -> None:
    buffer = b""
    while chunk := stream.read():
        buffer = decode_sizes(buffer + chunk, on_resize)


def decode_sizes(buffer: bytes, on_resize: Callable[[int, int], None]) -> bytes:
    """`handleResizeEvents`: a stream of JSON `TerminalSize` objects; returns the unread rest."""
    text = buffer.decode("utf-8", "replace")
    decoder = json.JSONDecoder()
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        try:
            size, pos = decoder.raw_decode(text, pos)
        except ValueError:
            break
        if isinstance(size, dict):
            with contextlib.suppress(TypeError, ValueError):
                on_resize(int(size.get("Width", 0)), int(size.get("Height", 0)))
    return text[pos:].encode("utf-8")
