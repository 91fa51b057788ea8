"""WebSocket sessions relayed frame by frame, with bounded memory and a message-size limit.

What mitmproxy 12.3.1 does (`WebsocketLayer.relay_messages`): wsproto hands over each read's
part of a frame as it arrives, and mitmproxy appends it to the message with `+=` on bytes, which
copies the whole frame so far on every read (quadratic: one 80 MB frame cost 20 s of the
proxy's only core), and relays nothing until the last fragment of the message: a message whose
fragments never end grew the proxy by 300 MB while relaying nothing. No hook runs before the
message is complete (`websocket_message` comes after), so no public hook can bound either, and
`upgrades.keep_messages: false` only trims complete messages.

The replacement below keeps mitmproxy's layer (wsproto, close handshake, extensions, injected
messages, the flow and its `websocket_message` hook, mitmweb's view) and changes three things:

- each frame's parts are kept in a list and joined once (linear), and the frame is relayed as
  soon as it is complete, with its FIN bit: the message no longer waits for its last fragment,
  and frame boundaries stay as the sender made them. That matters here: kube-apiserver reads
  exec, attach and port-forward WebSockets with golang.org/x/net/websocket (through
  `wsstream`), whose `Message.Receive` takes each frame as one message, channel byte first.
  So each frame is one `WebSocketMessage` in the flow and one `websocket_message` hook, before
  it is relayed (for Kubernetes' own clients a frame is a whole message; kubectl's are at most
  33 KiB, client-go `transport/websocket/roundtripper.go`). An addon may still change or drop
  it; a dropped last frame still ends the message for the receiver;
- a message (all its frames) larger than `limits.max_websocket_message_mb` (the seam policy's
  `max_websocket_message_bytes`, read as each message's frames arrive) closes the session
  on both sides with 1009 "message too big" and the limit named in the reason, as soon as the
  bytes pass it: at most that much of a frame is ever held per direction;
- pings and pongs are logged one by one only within the session's log allowance
  (`sessions/message_log.py`), then counted.

A per-session observer (issue 16's recordings) plugs in as an ordinary addon: its
`websocket_message` hook sees every frame, whole, before it is relayed, and `websocket_end`
the close; nothing here keeps more than one frame per direction for it.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import wsproto.events
from mitmproxy import websocket
from mitmproxy.proxy import commands, events
from mitmproxy.proxy.layers.websocket import (
    Fragmentizer,
    WebsocketConnection,
    WebsocketEndHook,
    WebsocketLayer,
    WebsocketMessageHook,
    WebSocketMessageInjected,
)
from wsproto.connection import ConnectionState
from wsproto.frame_protocol import CloseReason, Opcode

from kube_front_proxy import seam
from kube_front_proxy.seam.upgraded_backpressure import gated
from kube_front_proxy.sessions.message_log import describe, summary_line

logger = logging.getLogger("kube_front_proxy")

MESSAGE_TOO_BIG = CloseReason.MESSAGE_TOO_BIG  # 1009
CONFIG_KEY = "limits.max_websocket_message_mb"


@dataclass
class FrameInProgress:
    """One direction of a session: the frame being read, and the size of its message."""

    limit: int
    parts: list[bytes] = field(default_factory=list)
    message_size: int = 0
    # The receiver has been sent frames of a message whose last frame has not been sent.
    receiver_mid_message: bool = False

    def add(self, data: bytes) -> bool:
        """Keep part of the current frame; False once its message is over the limit."""
        self.message_size += len(data)
        if self.message_size > self.limit:
            self.parts.clear()
            return False
        if data:
            self.parts.append(data)
        return True

    def take(self, message_finished: bool) -> bytes:
        """The complete frame; a new message starts after its last frame."""
        frame = b"".join(self.parts)
        self.parts.clear()
        if message_finished:
            self.message_size = 0
        return frame


def too_big_reason(limit: int, from_client: bool) -> str:
    sender = "client" if from_client else "API server"
    size = f"{limit >> 20} MiB" if limit % (1 << 20) == 0 else f"{limit} bytes"
    return f"message too big: the {sender} sent over {size} ({CONFIG_KEY})"


def _ws_message(content: bytes, is_text: bool, fin: bool) -> wsproto.events.Message[Any]:
    if is_text:
        return wsproto.events.TextMessage(content.decode(errors="replace"), message_finished=fin)
    return wsproto.events.BytesMessage(content, message_finished=fin)


RelayGenerator = Generator[commands.Command, Any, None]


def make_relay() -> Callable[[WebsocketLayer, events.Event], RelayGenerator]:
    frames: weakref.WeakKeyDictionary[WebsocketConnection, FrameInProgress] = (
        weakref.WeakKeyDictionary()
    )

    def frame_of(ws: WebsocketConnection) -> FrameInProgress:
        state = frames.get(ws)
        if state is None:
            state = frames[ws] = FrameInProgress(seam.policy.max_websocket_message_bytes)
        return state

    def close_too_big(self: WebsocketLayer, from_client: bool, limit: int) -> RelayGenerator:
        assert self.flow.websocket
        reason = too_big_reason(limit, from_client)
        logger.warning("kube-front-proxy: %s closed with 1009: %s", describe(self.flow), reason)
        self.flow.websocket.timestamp_end = time.time()
        self.flow.websocket.closed_by_client = None  # by the proxy
        self.flow.websocket.close_code = MESSAGE_TOO_BIG
        self.flow.websocket.close_reason = reason
        for ws in (self.server_ws, self.client_ws):
            if ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                yield ws.send2(wsproto.events.CloseConnection(MESSAGE_TOO_BIG, reason))
            yield commands.CloseConnection(ws.conn)
        yield WebsocketEndHook(self.flow)
        self.flow.live = False
        self._handle_event = self.done

    def relay_frame(
        self: WebsocketLayer,
        dst_ws: WebsocketConnection,
        src: FrameInProgress,
        message: websocket.WebSocketMessage,
        fin: bool,
    ) -> RelayGenerator:
        assert self.flow.websocket
        self.flow.websocket.messages.append(message)
        yield WebsocketMessageHook(self.flow)
        is_text = message.type == Opcode.TEXT
        if not message.dropped:
            yield dst_ws.send2(_ws_message(message.content, is_text, fin))
            src.receiver_mid_message = not fin
        elif fin and src.receiver_mid_message:
            # Its earlier frames went out: the receiver must still see the message end.
            yield dst_ws.send2(_ws_message(b"", is_text, True))
            src.receiver_mid_message = False

    def relay_messages(self: WebsocketLayer, event: events.Event) -> RelayGenerator:
        assert self.flow.websocket

        if not isinstance(
            event, (events.DataReceived, events.ConnectionClosed, WebSocketMessageInjected)
        ):
            raise AssertionError(f"Unexpected event: {event}")
        injected = isinstance(event, WebSocketMessageInjected)
        if isinstance(event, WebSocketMessageInjected):
            from_client = event.message.from_client
        else:
            from_client = event.connection == self.context.client

        from_str = "client" if from_client else "server"
        if from_client:
            src_ws, dst_ws = self.client_ws, self.server_ws
        else:
            src_ws, dst_ws = self.server_ws, self.client_ws
        src = frame_of(src_ws)
        src.limit = seam.policy.max_websocket_message_bytes

        if isinstance(event, events.DataReceived):
            src_ws.receive_data(event.data)
        elif isinstance(event, events.ConnectionClosed):
            src_ws.receive_data(None)
        else:
            # As mitmproxy does: the injected message, cut into frames, read as if received.
            fragmentizer = Fragmentizer([], event.message.type == Opcode.TEXT)
            src_ws._events.extend(fragmentizer(event.message.content))

        for ws_event in src_ws.events():
            if isinstance(ws_event, wsproto.events.Message):
                is_text = isinstance(ws_event.data, str)
                data = ws_event.data.encode() if is_text else bytes(ws_event.data)
                if not src.add(data):
                    yield from close_too_big(self, from_client, src.limit)
                    return
                if ws_event.frame_finished:
                    fin = ws_event.message_finished
                    content = src.take(fin)
                    typ = Opcode.TEXT if is_text else Opcode.BINARY
                    message = websocket.WebSocketMessage(
                        typ, from_client, content, injected=injected
                    )
                    yield from relay_frame(self, dst_ws, src, message, fin)

            elif isinstance(ws_event, (wsproto.events.Ping, wsproto.events.Pong)):
                message_log = seam.policy.message_log
                if message_log.admit(self.flow.id):
                    yield commands.Log(
                        f"Received WebSocket {ws_event.__class__.__name__.lower()} from "
                        f"{from_str} (payload: {bytes(ws_event.payload)!r})"
                    )
                elif hidden := message_log.due(self.flow.id):
                    yield commands.Log(summary_line(self.flow, hidden))
                yield dst_ws.send2(ws_event)
            elif isinstance(ws_event, wsproto.events.CloseConnection):
                self.flow.websocket.timestamp_end = time.time()
                self.flow.websocket.closed_by_client = from_client
                self.flow.websocket.close_code = ws_event.code
                self.flow.websocket.close_reason = ws_event.reason

                for ws in [self.server_ws, self.client_ws]:
                    if ws.state in {ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING}:
                        # response == original event, so no need to differentiate here.
                        yield ws.send2(ws_event)
                    yield commands.CloseConnection(ws.conn)
                yield WebsocketEndHook(self.flow)
                self.flow.live = False
                self._handle_event = self.done
            else:  # pragma: no cover
                raise AssertionError(f"Unexpected WebSocket event: {ws_event}")

    return relay_messages


# mitmproxy 12.3.1's code: the method replaced, and what the replacement relies on as it is.
FINGERPRINT = "0ababbed07c09cbe"
PINNED = (
    # start() builds client_ws/server_ws and hands events to self.relay_messages.
    (WebsocketLayer, "start", "5dc3cec083b317d4"),
    (WebsocketConnection, "send2", "572227be068c7673"),
    (Fragmentizer, "__call__", "1955b872ca999f47"),
)


def install() -> None:
    for owner, attribute, fingerprint in PINNED:
        seam.pin(owner, attribute, fingerprint=fingerprint, why="used by seam/websocket_relay.py")
    seam.replace(
        WebsocketLayer,
        "relay_messages",
        gated(make_relay()),
        fingerprint=FINGERPRINT,
        why="WebSocket frames relayed as they complete, linear buffering, a message-size limit "
        "(1009), pings logged within the session's allowance (seam/websocket_relay.py)",
    )
