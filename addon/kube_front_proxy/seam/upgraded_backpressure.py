"""An upgraded session reads no further ahead than its message hooks.

mitmproxy runs every hook as a task. While a `websocket_message` or `tcp_message` hook is in
flight, the session's layer is paused and queues each event that arrives, and the connection's
read loops go on reading. A client that sends faster than the hooks complete fills that queue
without bound: a 128 MiB `kubectl cp` over WebSocket left 66 MB of reads queued in the proxy,
and a 64 MiB one grew it by 32-37 MiB. No hook can hold a read loop, so the two relays of
upgraded sessions (WebSocket, raw TCP) hold the connection's read loops (`read_holds.py`) from
the moment they start a message hook until its completion comes back. An upgraded connection is
then read one chunk at a time, as fast as its hooks go, and TCP's flow control holds the sender
back, in either direction. Only upgraded connections are held this way; a session intercepted
in mitmweb stops reading until it is resumed.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from mitmproxy.proxy import commands, events, layer
from mitmproxy.proxy.layers.tcp import TCPLayer, TcpMessageHook
from mitmproxy.proxy.layers.websocket import WebsocketMessageHook

from kube_front_proxy.seam import original, read_holds, replace

Relay = Callable[[Any, events.Event], Generator[commands.Command, Any, None]]


def gated(relay: Relay) -> Relay:
    """`relay`, holding the connection's reads from each message hook it yields until the
    hook's completion comes back."""

    def gated_relay(
        self: layer.Layer, event: events.Event
    ) -> Generator[commands.Command, Any, None]:
        client_id = self.context.client.id
        relayed = relay(self, event)
        reply: Any = None
        while True:
            try:
                command = relayed.send(reply)
            except StopIteration:
                return
            if isinstance(command, (WebsocketMessageHook, TcpMessageHook)):
                read_holds.session_holds.hold(client_id)
                try:
                    reply = yield command
                finally:
                    read_holds.session_holds.release(client_id)
            else:
                reply = yield command

    return gated_relay


def install() -> None:
    """The raw TCP relay, gated (websocket_relay.py gates its own); idempotent."""
    read_holds.install()
    replace(
        TCPLayer,
        "relay_messages",
        gated(original(TCPLayer, "relay_messages")),
        # mitmproxy 12.3.1's TCPLayer.relay_messages: one tcp_message hook per read.
        fingerprint="3b85a7128d5310d8",
        why="reads held while its tcp_message hooks run (seam/upgraded_backpressure.py)",
    )
