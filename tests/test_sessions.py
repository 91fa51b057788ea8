"""Session recordings without a proxy: decoding the remotecommand protocol, the asciicast files.

SPDY bytes come from the emulator's own encoder (the side that real kubectl checks in
test_e2e_sessions.py), cut at every possible place; every file is read back with asciinema's own
parser (asciinema 2.4, `asciinema.asciicast.v2`), not only with ours.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from asciinema import asciicast as asciinema_cast
from mitmproxy.test import tflow

from kube_front_proxy.observe import summary
from kube_front_proxy.sessions.asciicast import HEADER_ROOM, CastWriter, read_header
from kube_front_proxy.sessions.recording import Recording
from kube_front_proxy.sessions.remotecommand import (
    Channel,
    SpdyChannels,
    TerminalSizes,
    WebSocketChannels,
)
from kube_front_proxy.sessions.spdy_frames import (
    DICTIONARY,
    MAX_CONTROL_FRAME,
    FrameReader,
    SpdyError,
    StreamData,
    StreamOpened,
)
from kube_front_proxy.sessions.tracking import (
    BYTES_IN_ANNOTATION,
    REFUSAL,
    SESSION_ANNOTATION,
    SESSION_ERROR_ANNOTATION,
    SessionRequest,
    Sessions,
    session_request,
    title,
)
from tests.emulator import spdy
from tests.support.api_paths import EXEC


def asciinema_read(path: Path) -> tuple[dict[str, Any], list[list[Any]]]:
    """The header and events as asciinema itself reads them."""
    with asciinema_cast.open_from_url(str(path)) as cast:
        return cast.v2_header, list(cast.events())


# -- SPDY frames --------------------------------------------------------------------------------


def client_bytes() -> bytes:
    """What kubectl sends for `exec -it`: five streams, stdin data, a terminal size, a PING."""
    codec = spdy.ClientCodec()
    out = b""
    for stream_id, kind in ((1, "error"), (3, "stdin"), (5, "stdout"), (7, "resize")):
        out += codec.syn_stream(stream_id, [("streamType", kind), ("port", "x" * stream_id)],
                                fin=kind in ("error", "stdout"))  # fmt: skip
    out += spdy.control_frame(spdy.FrameType.PING, 0, struct.pack("!I", 1))
    out += spdy.data_frame(3, 0, b"ls -l\r")
    out += spdy.data_frame(7, 0, b'{"Width":100,"Height":40}\n')
    out += spdy.data_frame(3, spdy.FLAG_FIN, b"")
    return out


def test_the_spdy_dictionary_is_the_one_of_the_spec() -> None:
    # 1423 bytes (the emulator's own copy, which real kubectl agreed with, had this digest;
    # the emulator now uses this one, and the e2e tests over SPDY check it with kubectl).
    assert len(DICTIONARY) == 1423
    digest = "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02"
    assert hashlib.sha256(DICTIONARY).hexdigest() == digest


@pytest.mark.parametrize("cut", [1, 2, 3, 7, 8, 9, 13, 1000])
def test_spdy_frames_are_read_whatever_the_reads(cut: int) -> None:
    data = client_bytes()
    reader = FrameReader(headers=True)
    events = [e for i in range(0, len(data), cut) for e in reader.feed(data[i : i + cut])]
    opened = [(e.stream_id, e.headers["streamtype"]) for e in events
              if isinstance(e, StreamOpened)]  # fmt: skip
    assert opened == [(1, "error"), (3, "stdin"), (5, "stdout"), (7, "resize")]
    sent: dict[int, bytes] = {}
    for e in events:
        if isinstance(e, StreamData):
            sent[e.stream_id] = sent.get(e.stream_id, b"") + e.data
    assert sent == {3: b"ls -l\r", 7: b'{"Width":100,"Height":40}\n'}


def test_spdy_channels_follow_the_stream_types_each_way() -> None:
    channels = SpdyChannels()
    assert list(channels.data(client_bytes(), from_client=True)) == [
        (Channel.STDIN, b"ls -l\r"),
        (Channel.RESIZE, b'{"Width":100,"Height":40}\n'),
    ]
    server = spdy.HeaderCompressor()
    reply = spdy.control_frame(spdy.FrameType.SYN_REPLY, 0, struct.pack("!I", 5)
                               + server.compress([]))  # fmt: skip
    answer = reply + spdy.data_frame(5, 0, b"total 0\r\n") + spdy.data_frame(3, 0, b"spoof")
    # stdout from the API server; "stdin" from the API server is nobody's input.
    assert list(channels.data(answer, from_client=False)) == [(Channel.STDOUT, b"total 0\r\n")]


def test_a_huge_control_frame_is_refused_not_held() -> None:
    head = struct.pack("!HHI", 0x8000 | 3, spdy.FrameType.SYN_STREAM, MAX_CONTROL_FRAME + 1)
    with pytest.raises(SpdyError, match="control frame"):
        list(FrameReader(headers=True).feed(head))


def test_a_header_block_that_inflates_past_the_bound_is_refused() -> None:
    deflate = zlib.compressobj(zdict=DICTIONARY)
    bomb = struct.pack("!I", 1) + struct.pack("!I", 4) + b"name" + struct.pack("!I", 1 << 20)
    block = deflate.compress(bomb + b"a" * (1 << 20)) + deflate.flush(zlib.Z_SYNC_FLUSH)
    assert len(block) < MAX_CONTROL_FRAME
    frame = spdy.control_frame(spdy.FrameType.SYN_STREAM, 0, bytes(10) + block)
    with pytest.raises(SpdyError, match="over"):
        list(FrameReader(headers=True).feed(frame))


def test_a_large_data_frame_passes_in_pieces_without_being_held() -> None:
    reader = FrameReader(headers=False)
    head = struct.pack("!II", 3, (1 << 24) - 1)  # the largest: 16 MiB
    assert list(reader.feed(head)) == []
    piece = b"x" * 65536
    assert list(reader.feed(piece)) == [StreamData(3, piece)]


def test_not_spdy_is_an_error() -> None:
    with pytest.raises(SpdyError, match="version"):
        list(FrameReader(headers=True).feed(b"GET / HTTP/1.1\r\n"[:8].replace(b"G", b"\x80")))


# -- WebSocket channels and terminal sizes ------------------------------------------------------


def test_websocket_channels_binary_and_base64() -> None:
    v5 = WebSocketChannels("v5.channel.k8s.io")
    assert v5.message(b"\x00ls\r", from_client=True) == (Channel.STDIN, b"ls\r")
    assert v5.message(b"\x01out", from_client=False) == (Channel.STDOUT, b"out")
    assert v5.message(b"\x02err", from_client=False) == (Channel.STDERR, b"err")
    assert v5.message(b"\x01", from_client=False) == (Channel.STDOUT, b"")
    assert v5.message(b"\xff\x00", from_client=True) is None  # v5: close stdin
    assert v5.message(b"", from_client=True) is None
    assert v5.message(b"\x01spoofed output", from_client=True) is None
    assert v5.message(b"\x09?", from_client=True) is None
    b64 = WebSocketChannels("v4.base64.channel.k8s.io")
    assert b64.message(b"0bHMNCg==", from_client=True) == (Channel.STDIN, b"ls\r\n")
    assert b64.message(b"1aGk=", from_client=False) == (Channel.STDOUT, b"hi")
    assert b64.message(b"1not base64!", from_client=False) is None
    assert WebSocketChannels("base64.channel.k8s.io").base64


def test_terminal_sizes_split_and_joined() -> None:
    sizes = TerminalSizes()
    assert sizes.feed(b'{"Width":100,') == []
    assert sizes.feed(b'"Height":40}\n{"Width":120,"Height":50}\n{"Wi') == [(100, 40), (120, 50)]
    assert sizes.feed(b'dth":0,"Height":5}{"Width":"9","Height":9}[1]') == []
    assert sizes.feed(b"x" * 2000) == []
    assert sizes.feed(b'{"Width":7,"Height":3}') == [(7, 3)]


# -- the asciicast file -------------------------------------------------------------------------


def start(path: Path, max_bytes: int = 1 << 20) -> Recording:
    own = {"auditID": "x", "user": "alice", "verb": "exec"}
    return Recording.start(path, max_bytes, "alice: exec default/nginx-1 -- sh", own)


def test_a_recording_is_asciicast_v2_as_asciinema_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "s.cast"
    recording = start(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    recording.piece(Channel.RESIZE, b'{"Width":100,"Height":40}\n')
    recording.piece(Channel.STDIN, b"echo h\xc3")  # a character cut in two
    recording.piece(Channel.STDIN, b"\xa9\r")
    recording.piece(Channel.STDOUT, b"h\xc3\xa9\r\n$ ")
    recording.piece(Channel.STDERR, b"\x1b[31mwarn\x1b[0m")
    recording.piece(Channel.ERROR, b'{"status":"Success"}')
    # Mid-session, asciinema already reads a valid file.
    header, events = asciinema_read(path)
    assert (header["width"], header["height"]) == (100, 40)
    assert [e[1:] for e in events][:3] == [["r", "100x40"], ["i", "echo h"], ["i", "é\r"]]
    recording.piece(Channel.RESIZE, b'{"Width":120,"Height":50}\n')
    recording.finish()
    header, events = asciinema_read(path)
    assert header["version"] == 2 and header["title"] == "alice: exec default/nginx-1 -- sh"
    assert (header["width"], header["height"]) == (100, 40)
    assert header["duration"] >= events[-1][0] >= 0
    assert header["kube_front_proxy"] == {
        "auditID": "x", "user": "alice", "verb": "exec",
        "bytes_in": 9, "bytes_out": 20, "truncated": False, "ended": True,
    }  # fmt: skip
    assert [e[1:] for e in events] == [
        ["r", "100x40"], ["i", "echo h"], ["i", "é\r"], ["o", "hé\r\n$ "],
        ["o", "\x1b[31mwarn\x1b[0m"], ["r", "120x50"],
    ]  # fmt: skip
    assert all(e[0] >= 0 for e in events)
    assert b"\n\n" not in path.read_bytes()  # an empty line ends asciinema's reader


def test_no_resize_means_80x24(tmp_path: Path) -> None:
    recording = start(tmp_path / "s.cast")
    recording.piece(Channel.STDOUT, b"\xff\xfe binary")
    recording.finish()
    header, events = asciinema_read(tmp_path / "s.cast")
    assert (header["width"], header["height"]) == (80, 24)
    assert events[0][1:] == ["o", "\ufffd\ufffd binary"]


def test_the_file_stops_at_its_size_and_the_rest_is_counted(tmp_path: Path) -> None:
    path = tmp_path / "s.cast"
    recording = start(path, max_bytes=4096)
    for _ in range(100):
        recording.piece(Channel.STDIN, b"a" * 100)
    recording.finish()
    assert path.stat().st_size <= 4096
    header, events = asciinema_read(path)
    own = header["kube_front_proxy"]
    assert own["truncated"] is True and own["bytes_in"] == 10_000
    assert 0 < len(events) < 40


def test_a_file_is_never_reused_nor_followed_through_a_link(tmp_path: Path) -> None:
    (tmp_path / "target").write_text("keep")
    (tmp_path / "link.cast").symlink_to(tmp_path / "target")
    with pytest.raises(OSError):
        start(tmp_path / "link.cast")
    start(tmp_path / "s.cast").finish()
    with pytest.raises(FileExistsError):
        start(tmp_path / "s.cast")
    assert (tmp_path / "target").read_text() == "keep"


def test_a_failed_write_leaves_a_readable_file_and_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.cast"
    recording = start(path)
    recording.piece(Channel.STDOUT, b"before\r\n")
    real_write = os.write

    def disk_full(fd: int, data: Any) -> int:
        real_write(fd, bytes(data)[:5])  # in part, as a disk filling up does
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", disk_full)
    with pytest.raises(OSError, match="No space"):
        recording.piece(Channel.STDOUT, b"after\r\n")
    monkeypatch.undo()
    recording.finish(error="recording stopped: No space left on device")
    header, events = asciinema_read(path)
    assert [e[1:] for e in events] == [["o", "before\r\n"]]
    assert header["kube_front_proxy"]["error"] == "recording stopped: No space left on device"


def test_the_header_keeps_room_for_what_comes_later(tmp_path: Path) -> None:
    path = tmp_path / "s.cast"
    writer = CastWriter.create(path, {"version": 2, "width": 80, "height": 24}, 1 << 20)
    grown = {"version": 2, "width": 65535, "height": 65535, "x": "y" * (HEADER_ROOM - 60)}
    assert writer.rewrite_header(grown)
    assert not writer.rewrite_header({**grown, "x": "y" * HEADER_ROOM})
    writer.close()
    assert read_header(path) == grown


# -- requests, titles, the listing --------------------------------------------------------------


def test_what_a_request_asks_for() -> None:
    target = f"{EXEC}?command=sh&command=-c&command=echo+%22hi+there%22&container=nginx&tty=true"
    request = session_request("GET", target)
    assert request == SessionRequest("exec", "default", "nginx-1", "nginx",
                                     ("sh", "-c", 'echo "hi there"'), tty=True)  # fmt: skip
    assert (
        title("alice", request)
        == "alice: exec default/nginx-1 -c nginx -- sh -c 'echo \"hi there\"'"
    )
    attach = session_request("POST", "/api/v1/namespaces/ns/pods/p/attach?stdin=true&tty=false")
    assert attach == SessionRequest("attach", "ns", "p")
    assert title("bob", attach) == "bob: attach ns/p"
    assert session_request("GET", "/api/v1/namespaces/ns/pods/p/portforward?ports=80")
    assert session_request("GET", "/api/v1/namespaces/ns/pods/p/log?follow=true") is None
    assert session_request("GET", "/apis/x.io/v1/namespaces/ns/pods/p/exec") is None
    assert session_request("GET", "/api/v1/namespaces/ns/services/p/exec") is None


def test_the_listing_escapes_what_clients_chose(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    own = {"auditID": "x", "user": "mallory\x1b[2J", "verb": "exec", "namespace": "default",
           "pod": "nginx-1", "container": "c", "command": ["sh", "-c", "a\nb"],
           "started": "2026-01-02T03:04:05.000000Z"}  # fmt: skip
    recording = Recording.start(tmp_path / "a.cast", 1 << 20, "t", own)
    recording.piece(Channel.STDIN, b"abc")
    recording.finish()
    (tmp_path / "b.cast").write_text("not a recording\n")
    assert summary.main(["sessions", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    header, line = out.splitlines()
    assert header.split() == ["START", "USER", "VERB", "POD", "CONTAINER", "COMMAND",
                              "DURATION", "IN", "OUT", "TRUNCATED", "FILE"]  # fmt: skip
    assert "mallory\\x1b[2J" in line and "'a\\x0ab'" in line and "\x1b" not in out
    assert line.split()[-4:] == ["3", "0", "no", "a.cast"]
    assert "skipped b.cast" in err


# -- the registry, with mitmproxy's test flows -------------------------------------------------


def exec_flow(websocket: bool = True) -> Any:
    flow = tflow.twebsocketflow() if websocket else tflow.tflow(resp=True)
    flow.request.path = f"{EXEC}?command=sh&container=nginx&stdin=true&tty=true"
    flow.request.headers["Upgrade"] = "websocket" if websocket else "SPDY/3.1"
    flow.metadata["k8s_user"] = "alice"
    flow.metadata["k8s_audit_id"] = "0b3c8d52-7d4e-4f7e-9a51-6f5c1c2f0a11"
    flow.comment = "user alice"
    return flow


def test_a_session_recorded_through_the_hooks(tmp_path: Path) -> None:
    sessions = Sessions(tmp_path / "sessions")
    flow = exec_flow()
    opened = sessions.request(flow)
    path = tmp_path / "sessions" / "0b3c8d52-7d4e-4f7e-9a51-6f5c1c2f0a11.cast"
    assert opened.refusal is None and opened.annotations == {SESSION_ANNOTATION: str(path)}
    assert flow.comment == f"user alice; session recorded in {path}"
    flow.response.status_code = 101
    flow.response.headers["Sec-WebSocket-Protocol"] = "v5.channel.k8s.io"
    sessions.response(flow)
    flow.websocket.messages = []
    for content, from_client in ((b"\x00id\r", True), (b"\x01uid=0\r\n", False)):
        flow.websocket.messages.append(tflow.websocket.WebSocketMessage(2, from_client, content))
        sessions.websocket_message(flow)
    annotations = sessions.end(flow.client_conn.id)
    assert annotations[BYTES_IN_ANNOTATION] == "4"
    assert len(sessions) == 0
    header, events = asciinema_read(path)
    assert header["kube_front_proxy"]["protocol"] == "v5.channel.k8s.io"
    assert [e[1:] for e in events] == [["i", "id\r"], ["o", "uid=0\r\n"]]


def test_no_upgrade_no_file(tmp_path: Path) -> None:
    sessions = Sessions(tmp_path)
    flow = exec_flow()
    sessions.request(flow)
    assert list(tmp_path.iterdir())
    flow.response.status_code = 403
    sessions.response(flow)
    assert list(tmp_path.iterdir()) == [] and len(sessions) == 0


def test_a_request_whose_client_left_before_its_answer_leaves_no_file(tmp_path: Path) -> None:
    sessions = Sessions(tmp_path)
    flow = exec_flow()
    sessions.request(flow)
    assert list(tmp_path.iterdir())
    assert sessions.disconnected(flow.client_conn.id) == {}
    assert list(tmp_path.iterdir()) == [] and len(sessions) == 0


def test_an_unwritable_directory_is_counted_and_refused_only_when_required(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    failures: list[str] = []
    lenient = Sessions(blocked / "sessions", failed=failures.append)
    flow = exec_flow()
    opened = lenient.request(flow)
    assert opened.refusal is None
    assert opened.annotations[SESSION_ERROR_ANNOTATION].startswith("not recorded: ")
    assert flow.comment == "user alice; session not recorded"
    strict = Sessions(blocked / "sessions", required=True, failed=failures.append)
    assert strict.request(exec_flow()).refusal == REFUSAL
    assert failures == ["open", "open"]


def test_a_write_failure_closes_the_session_only_when_required(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[str] = []
    for required in (False, True):
        failures: list[str] = []
        sessions = Sessions(tmp_path / str(required), required=required,
                            failed=failures.append, close_client=closed.append)  # fmt: skip
        flow = exec_flow(websocket=False)
        sessions.request(flow)
        flow.response.status_code = 101
        sessions.response(flow)
        tcp = tflow.ttcpflow(client_conn=flow.client_conn)
        stdin = spdy.ClientCodec().syn_stream(1, [("streamType", "stdin")], fin=False)
        tcp.messages = [tflow.tcp.TCPMessage(True, stdin)]
        sessions.tcp_message(tcp)
        monkeypatch.setattr(os, "write", lambda *_: (_ for _ in ()).throw(OSError(28, "full")))
        tcp.messages.append(tflow.tcp.TCPMessage(True, spdy.data_frame(1, 0, b"secret")))
        sessions.tcp_message(tcp)
        monkeypatch.undo()
        # Not recorded: when required, not relayed either, and the connection is closed.
        assert tcp.messages[-1].content == (b"" if required else spdy.data_frame(1, 0, b"secret"))
        assert failures == ["write"]
        assert sessions.end(flow.client_conn.id)[SESSION_ERROR_ANNOTATION] == (
            "recording stopped: full"
        )
    assert closed == [flow.client_conn.id]


def test_json_of_every_event_is_one_line(tmp_path: Path) -> None:
    recording = start(tmp_path / "s.cast")
    recording.piece(Channel.STDOUT, '\n\r\u2028\x00"\\'.encode())
    recording.finish()
    lines = (tmp_path / "s.cast").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])[2] == '\n\r\u2028\x00"\\'
