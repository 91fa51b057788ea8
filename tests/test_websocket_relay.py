"""The WebSocket relay (seam/websocket_relay.py) driven event by event, without sockets.

mitmproxy's WebsocketLayer runs with the relay installed; the test plays both connections:
it feeds the bytes a client or server sent, answers the hooks, and reads back the frames the
layer writes, header by header, so frame boundaries, FIN bits and close codes are checked
exactly.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator

import pytest
from mitmproxy import connection, http, options
from mitmproxy.proxy import commands, events
from mitmproxy.proxy.context import Context
from mitmproxy.proxy.layers.websocket import WebsocketLayer, WebsocketMessageHook
from mitmproxy.test import tflow

from kube_front_proxy import seam
from kube_front_proxy.seam import websocket_relay
from kube_front_proxy.seam.websocket_relay import FrameInProgress
from kube_front_proxy.sessions.message_log import MessageLog
from tests.emulator.websocket import Opcode, encode_frame

LIMIT = 64 * 1024
Frame = tuple[bool, int, bytes]  # FIN, opcode, unmasked payload


def read_frames(data: bytes) -> list[Frame]:
    """Every frame in `data` as written, masked or not (RFC 6455 5.2)."""
    frames = []
    while data:
        fin, opcode = bool(data[0] & 0x80), data[0] & 0x0F
        masked, length, offset = data[1] & 0x80, data[1] & 0x7F, 2
        if length == 126:
            length, offset = struct.unpack_from("!H", data, 2)[0], 4
        elif length == 127:
            length, offset = struct.unpack_from("!Q", data, 2)[0], 10
        key = data[offset : offset + 4] if masked else b"\0\0\0\0"
        offset += 4 if masked else 0
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(data[offset : offset + length]))
        frames.append((fin, opcode, payload))
        data = data[offset + length :]
    return frames


def client_frame(opcode: Opcode, payload: bytes, fin: bool = True) -> bytes:
    return encode_frame(opcode, payload, fin=fin, mask=os.urandom(4))


class Session:
    """A WebsocketLayer between a pretend client and server, with the relay installed."""

    def __init__(self, limit: int = LIMIT, on_message: Callable[[http.HTTPFlow], None] = print):
        self.log = MessageLog(burst=3)
        seam.configure(seam.Policy(max_websocket_message_bytes=limit, message_log=self.log))
        websocket_relay.install()
        self.flow = tflow.twebsocketflow(messages=False)
        assert self.flow.websocket
        self.flow.websocket.messages.clear()
        self.context = Context(self.flow.client_conn, options.Options())
        self.context.server = self.flow.server_conn
        self.layer = WebsocketLayer(self.context, self.flow)
        self.on_message = on_message
        self.commands: list[commands.Command] = []
        self.run(events.Start())

    def run(self, event: events.Event) -> None:
        pending = [event]
        while pending:
            for command in self.layer.handle_event(pending.pop(0)):
                self.commands.append(command)
                if isinstance(command, WebsocketMessageHook):
                    self.on_message(command.flow)
                if isinstance(command, commands.StartHook):
                    pending.append(events.HookCompleted(command))

    def from_client(self, data: bytes) -> None:
        self.run(events.DataReceived(self.context.client, data))

    def from_server(self, data: bytes) -> None:
        self.run(events.DataReceived(self.context.server, data))

    def sent_to(self, conn: connection.Connection) -> list[Frame]:
        """The frames written to `conn` since the last call."""
        data = b"".join(
            c.data
            for c in self.commands
            if isinstance(c, commands.SendData) and c.connection is conn
        )
        self.commands = [
            c
            for c in self.commands
            if not (isinstance(c, commands.SendData) and c.connection is conn)
        ]
        return read_frames(data)

    def closed(self) -> set[connection.Connection]:
        return {c.connection for c in self.commands if isinstance(c, commands.CloseConnection)}


@pytest.fixture
def session() -> Iterator[Session]:
    yield Session(on_message=lambda f: None)


def test_each_frame_is_relayed_as_soon_as_it_is_complete_with_its_fin_bit(session: Session) -> None:
    session.from_client(client_frame(Opcode.BINARY, b"\x00first", fin=False))
    # Not held until the message ends: the receiver has the first frame, still open.
    assert session.sent_to(session.context.server) == [(False, Opcode.BINARY, b"\x00first")]
    session.from_client(client_frame(Opcode.CONTINUATION, b" second", fin=False))
    session.from_client(client_frame(Opcode.CONTINUATION, b" last"))
    assert session.sent_to(session.context.server) == [
        (False, Opcode.CONTINUATION, b" second"),
        (True, Opcode.CONTINUATION, b" last"),
    ]
    assert [m.content for m in session.flow.websocket.messages] == [
        b"\x00first",
        b" second",
        b" last",
    ]


def test_a_frame_read_in_pieces_goes_out_once_whole(session: Session) -> None:
    payload = os.urandom(40_000)
    wire = encode_frame(Opcode.BINARY, payload)  # from the server: unmasked
    for i in range(0, len(wire), 1000):
        session.from_server(wire[i : i + 1000])
        if i + 1000 < len(wire):
            assert session.sent_to(session.context.client) == []
    assert session.sent_to(session.context.client) == [(True, Opcode.BINARY, payload)]


def test_text_frames_stay_text(session: Session) -> None:
    session.from_client(client_frame(Opcode.TEXT, "0héllo".encode()))
    assert session.sent_to(session.context.server) == [(True, Opcode.TEXT, "0héllo".encode())]


def test_a_message_over_the_limit_closes_both_sides_with_1009(session: Session) -> None:
    session.from_client(client_frame(Opcode.BINARY, b"\x00" + bytes(LIMIT // 2 - 1), fin=False))
    session.from_client(client_frame(Opcode.CONTINUATION, bytes(LIMIT // 2), fin=False))
    assert len(session.sent_to(session.context.server)) == 2
    # The message passes the limit within its third frame, long before that frame ends.
    session.from_client(client_frame(Opcode.CONTINUATION, bytes(10 * LIMIT))[:4096])
    reason = "message too big: the client sent over 65536 bytes (limits.max_websocket_message_mb)"
    close = (True, Opcode.CLOSE, struct.pack("!H", 1009) + reason.encode())
    assert session.sent_to(session.context.server) == [close]
    assert session.sent_to(session.context.client) == [close]
    assert session.closed() == {session.context.client, session.context.server}
    ws = session.flow.websocket
    assert (ws.close_code, ws.close_reason, ws.closed_by_client) == (1009, reason, None)
    assert not session.flow.live


def test_the_limit_counts_the_whole_message_not_each_frame(session: Session) -> None:
    for _ in range(3):
        session.from_server(encode_frame(Opcode.BINARY, bytes(LIMIT - 1)))
    assert [f[0] for f in session.sent_to(session.context.client)] == [True, True, True]
    session.from_server(encode_frame(Opcode.BINARY, bytes(LIMIT // 2), fin=False))
    session.from_server(encode_frame(Opcode.CONTINUATION, bytes(LIMIT // 2 + 1)))
    [(_, opcode, payload)] = session.sent_to(session.context.client)[-1:]
    assert (opcode, payload[:2]) == (Opcode.CLOSE, struct.pack("!H", 1009))
    assert b"the API server sent" in payload


def test_a_dropped_last_frame_still_ends_the_message() -> None:
    def drop_last(flow: http.HTTPFlow) -> None:
        assert flow.websocket
        if flow.websocket.messages[-1].content == b"drop me":
            flow.websocket.messages[-1].drop()

    session = Session(on_message=drop_last)
    session.from_client(client_frame(Opcode.BINARY, b"\x00keep", fin=False))
    session.from_client(client_frame(Opcode.CONTINUATION, b"drop me"))
    session.from_client(client_frame(Opcode.BINARY, b"\x00next"))
    assert session.sent_to(session.context.server) == [
        (False, Opcode.BINARY, b"\x00keep"),
        (True, Opcode.CONTINUATION, b""),
        (True, Opcode.BINARY, b"\x00next"),
    ]


def test_pings_are_relayed_and_logged_within_the_allowance(session: Session) -> None:
    session.from_client(b"".join(client_frame(Opcode.PING, b"%d" % i) for i in range(10)))
    assert session.sent_to(session.context.server) == [
        (True, Opcode.PING, b"%d" % i) for i in range(10)
    ]
    logged = [c.message for c in session.commands if isinstance(c, commands.Log)]
    assert [m for m in logged if "ping" in m] == [
        f"Received WebSocket ping from client (payload: b'{i}')" for i in range(3)
    ]


def test_frame_in_progress_keeps_parts_and_joins_once() -> None:
    frame = FrameInProgress(limit=10)
    assert frame.add(b"abc") and frame.add(b"") and frame.add(b"def")
    assert frame.parts == [b"abc", b"def"]
    assert frame.take(message_finished=False) == b"abcdef"
    assert frame.add(b"ghij")
    assert not frame.add(b"k")  # 11 bytes in this message
    assert frame.parts == []
