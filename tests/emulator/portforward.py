"""port-forward over SPDY, plain or tunnelled inside a WebSocket.

**SPDY** (`KUBECTL_PORT_FORWARD_WEBSOCKETS=false`): a POST upgraded to SPDY/3.1 with
`X-Stream-Protocol-Version: portforward.k8s.io`, proxied by the apiserver to the kubelet, whose
handler is mirrored here (`k8s.io/kubelet pkg/cri/streaming/portforward/httpstream.go`). For each
local connection the client opens an error stream and then a data stream (`k8s.io/client-go
tools/portforward/portforward.go` `handleConnection`), both with the headers `port`, `requestID`
and `streamType`. The server pairs them by requestID, connects to the port in the pod, copies
both ways, and closes both streams when done; a failure is written as text on the error stream
and both streams are reset.

**WebSocket tunnel** (kubectl 1.31+ default): a GET with `Upgrade: websocket` offering
`SPDY/3.1+portforward.k8s.io` (`k8s.io/apimachinery pkg/util/portforward/constants.go`;
`tools/portforward/tunneling_dialer.go`). kube-apiserver's TunnelingHandler
(`k8s.io/apiserver pkg/util/proxy/streamtunnel.go`) upgrades to SPDY towards the kubelet, then
answers the client with a WebSocket whose subprotocol is the prefix plus the kubelet's choice, and
from then on carries the SPDY bytes as binary messages, message boundaries meaning nothing
(`tools/portforward/tunneling_connection.go`). Without a tunnelling subprotocol the answer is a
400 "unable to upgrade: no tunneling spdy protocols provided".
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence

from . import spdy, websocket
from .container import Reader, Writer
from .remotecommand import go_http_error, spdy_handshake, spdy_switching_protocols
from .requestheader import Header
from .tunnel import Hijack, Tunnel

PORT_FORWARD_V1 = "portforward.k8s.io"
TUNNELING_PREFIX = "SPDY/3.1+"
KUBERNETES_SUFFIX = ".k8s.io"
STREAM_CREATION_TIMEOUT = 30.0

PortServer = Callable[[int], Callable[[Reader, Writer], None] | None]


class _PairForwarder:
    """`httpStreamHandler`: pairs error and data streams and forwards each pair."""

    def __init__(self, pod: str, serve_port: PortServer) -> None:
        self._pod = pod
        # The CRI streaming server names the pod by its sandbox id and passes no uid.
        self._sandbox = uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox/{pod}").hex
        self._serve_port = serve_port
        self._pairs: dict[str, dict[str, spdy.Stream]] = {}
        self._lock = threading.Lock()
        self.forwarded = 0

    @staticmethod
    def accept(stream: spdy.Stream) -> bool:
        """`httpStreamReceived`: a port header (1-65535) and streamType error or data."""
        port = stream.header("port")
        if not port.isdigit() or not 0 < int(port) < 1 << 16:
            return False
        return stream.header("streamType") in ("error", "data")

    def opened(self, stream: spdy.Stream) -> None:
        kind = stream.header("streamType")
        request_id = stream.header("requestID")
        if not request_id:
            # Old clients: the error stream's id, or the data stream's minus two.
            request_id = str(stream.id if kind == "error" else stream.id - 2)
        with self._lock:
            pair = self._pairs.setdefault(request_id, {})
            if kind in pair:
                if "error" in pair:
                    pair["error"].write(
                        f"error processing stream for request {request_id}:"
                        f" {kind} stream already assigned".encode()
                    )
                return
            pair[kind] = stream
            complete = len(pair) == 2
            if complete:
                del self._pairs[request_id]
        if complete:
            threading.Thread(
                target=self._forward, args=(pair["data"], pair["error"]), daemon=True
            ).start()

    def _forward(self, data: spdy.Stream, error: spdy.Stream) -> None:
        port = int(data.header("port"))
        handler = self._serve_port(port)
        if handler is None:
            # Shaped like containerd's message for a port nothing listens on.
            error.write(
                f"error forwarding port {port} to pod {self._sandbox}, uid : failed to connect"
                f" to localhost:{port} inside namespace {self._sandbox!r}, IPv4: dial tcp4"
                f" 127.0.0.1:{port}: connect: connection refused".encode()
            )
            data.reset()
            error.reset()
            return
        self.forwarded += 1
        handler(data, data)
        data.close()
        error.close()


def spdy_portforward(headers: Sequence[Header], pod: str, serve_port: PortServer) -> Hijack:
    """A POST upgraded to SPDY: the kubelet's `handleHTTPStreams`."""
    protocol, refusal = spdy_handshake(headers, (PORT_FORWARD_V1,))
    if refusal is not None:
        return Hijack(refusal)

    def run(tunnel: Tunnel) -> None:
        forwarder = _PairForwarder(pod, serve_port)
        session = spdy.Session(tunnel, forwarder.accept, on_open=forwarder.opened)
        tunnel.run(session)

    return Hijack(spdy_switching_protocols(protocol), run)


class _MessageTransport:
    """SPDY bytes out as WebSocket binary messages (`TunnelingConnection.Write`)."""

    def __init__(self) -> None:
        self.ws: websocket.ServerConnection | None = None

    def send(self, data: bytes) -> None:
        assert self.ws is not None
        self.ws.send(data)

    def close(self, linger: float = 0.0) -> None:
        assert self.ws is not None
        self.ws.close(websocket.CLOSE_NORMAL)


def tunneled_protocols(headers: Sequence[Header]) -> list[str]:
    """`spdyProtocolsFromWebsocketProtocols`: offered `SPDY/3.1+*.k8s.io`, prefix removed."""
    return [
        p[len(TUNNELING_PREFIX) :]
        for p in websocket.subprotocols(headers)
        if p.startswith(TUNNELING_PREFIX) and p.endswith(KUBERNETES_SUFFIX)
    ]


def websocket_portforward(
    method: str, headers: Sequence[Header], pod: str, serve_port: PortServer
) -> Hijack:
    """A GET upgraded to WebSocket carrying SPDY: the apiserver's TunnelingHandler."""
    offered = tunneled_protocols(headers)
    if not offered:
        return Hijack(go_http_error(400, "unable to upgrade: no tunneling spdy protocols provided"))
    # The SPDY request the apiserver makes to the kubelet offers exactly these.
    protocol = next((p for p in offered if p == PORT_FORWARD_V1), "")
    if not protocol:
        message = (
            "unable to upgrade: unable to negotiate protocol: client supports"
            f" [{' '.join(offered)}], server accepts [{PORT_FORWARD_V1}]"
        )
        accepted = [("X-Accepted-Stream-Protocol-Versions", PORT_FORWARD_V1)]
        return Hijack(go_http_error(403, message, accepted))
    if websocket.handshake_problem(method, headers) is not None:
        # gorilla's Upgrader: http.Error with the status text, and its version header.
        return Hijack(go_http_error(400, "Bad Request", [("Sec-Websocket-Version", "13")]))
    key = next(v for n, v in headers if n.lower() == "sec-websocket-key")

    def run(tunnel: Tunnel) -> None:
        forwarder = _PairForwarder(pod, serve_port)
        transport = _MessageTransport()
        session = spdy.Session(transport, forwarder.accept, on_open=forwarder.opened)
        ws = websocket.ServerConnection(
            tunnel,
            lambda message: session.data_received(message.data),
            session.eof_received,
        )
        transport.ws = ws
        tunnel.run(ws)

    return Hijack(websocket.switching_protocols(key, TUNNELING_PREFIX + protocol), run)
