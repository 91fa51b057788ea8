"""HTTP/2 header blocks and frames that never end, before any login (the CVE-2024-27316 class).

mitmproxy advertised and accepted 128 KiB frames, and the h2 library holds a header block until
its END_HEADERS (HEADERS, then up to 63 CONTINUATION frames) and a frame until all of it has
arrived, its length checked only then: each connection could make the proxy hold 8 MiB before
the request head limit ran on the complete block. Now the proxy advertises 16 KiB frames,
refuses a longer one at its header, and refuses a header block as soon as it passes the request
head limit before its end (`kube_front_proxy.seam.h2_client_frames`).

The attack client writes raw frames (hyperframe, hpack) over real TLS to the real proxy; asserted:
the proxy's resident memory, each connection's GOAWAY, and that a logged-in user is served.
"""

from __future__ import annotations

import select
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import hpack
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import ContinuationFrame, Frame, GoAwayFrame, HeadersFrame, SettingsFrame

from tests.support.harness import Emulator, Proxy, start_proxy_for
from tests.support.measure import rss_mib
from tests.support.processes import running
from tests.support.users import basic_header, password_of

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
CONNECTIONS = 50
MAX_GROWTH_MIB = 40
KIB = 1024


@dataclass
class Outcome:
    goaway: GoAwayFrame | None = None
    closed: bool = False


def _connect(proxy: Proxy) -> ssl.SSLSocket:
    context = proxy.context()
    context.set_alpn_protocols(["h2"])
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=30)
    sock = context.wrap_socket(raw, server_hostname="localhost")
    assert sock.selected_alpn_protocol() == "h2"
    sock.sendall(PREFACE + SettingsFrame(0).serialize())
    return sock


def _block_start(extra: bytes = b"") -> bytes:
    """What a header block starts with: the request's pseudo-headers, and `extra`."""
    return bytes(hpack.Encoder().encode(_pseudo("/api"))) + extra


def _frame(frame: Frame, data: bytes, *flags: str) -> bytes:
    frame.data = data
    for flag in flags:
        frame.flags.add(flag)
    return bytes(frame.serialize())


def continuation_flood(frame_size: int) -> Iterator[bytes]:
    """HEADERS without END_HEADERS, then 63 CONTINUATION frames without it either."""
    yield _frame(HeadersFrame(1), _block_start(b"\x00" * (frame_size - 100)), "END_STREAM")
    filler = b"\x00" * frame_size
    for _ in range(63):
        yield _frame(ContinuationFrame(1), filler)


def announced_16_mib() -> Iterator[bytes]:
    """A HEADERS frame header announcing 16 MiB, then 8 MiB of its payload."""
    yield (2**24 - 1).to_bytes(3) + bytes([0x1, 0x0]) + (1).to_bytes(4)
    chunk = b"\x00" * (256 * KIB)
    for _ in range(32):
        yield chunk


def _send(sock: ssl.SSLSocket, chunks: Iterator[bytes]) -> None:
    """Send until the proxy stops taking it."""
    try:
        for chunk in chunks:
            sock.sendall(chunk)
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
        pass


def _outcomes(socks: list[ssl.SSLSocket], timeout: float) -> list[Outcome]:
    """What the proxy answered on each connection until it closed it (or the time is up)."""
    received = {sock: b"" for sock in socks}
    outcomes = {sock: Outcome() for sock in socks}
    deadline = time.monotonic() + timeout
    open_ = set(socks)
    while open_ and time.monotonic() < deadline:
        readable, _, _ = select.select(list(open_), [], [], deadline - time.monotonic())
        for sock in readable:
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                data = b""
            except ssl.SSLWantReadError:
                continue
            if not data:
                outcomes[sock].closed = True
                open_.discard(sock)
            received[sock] += data
    for sock, data in received.items():
        outcomes[sock].goaway = next((f for f in _frames(data) if isinstance(f, GoAwayFrame)), None)
    return [outcomes[sock] for sock in socks]


def _frames(data: bytes) -> Iterator[Frame]:
    while len(data) >= 9:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        if len(data) < 9 + length:
            return
        frame.parse_body(memoryview(data[9 : 9 + length]))
        yield frame
        data = data[9 + length :]


def _served(proxy: Proxy) -> int:
    client = proxy.h2("localhost")
    try:
        auth = ("authorization", basic_header("alice", password_of("alice"))[1])
        return client.response(client.request("GET", "/version", [auth])).status
    finally:
        client.close()


ATTACKS = [
    pytest.param(
        lambda: continuation_flood(128 * KIB), ErrorCodes.FRAME_SIZE_ERROR, id="128k-frames"
    ),
    pytest.param(
        lambda: continuation_flood(16 * KIB), ErrorCodes.ENHANCE_YOUR_CALM, id="16k-frames"
    ),
    pytest.param(announced_16_mib, ErrorCodes.FRAME_SIZE_ERROR, id="16mib-frame-header"),
]


@pytest.mark.parametrize(("chunks", "error_code"), ATTACKS)
def test_endless_header_blocks_hold_little_and_are_refused(
    pki: Path,
    emulator: Emulator,
    tmp_path: Path,
    chunks: Callable[[], Iterator[bytes]],
    error_code: ErrorCodes,
) -> None:
    # Its own proxy: memory another test freed would hide growth.
    proxy = start_proxy_for(pki, tmp_path, emulator.port)
    with running(proxy.process):
        assert _served(proxy) == 200
        pid = proxy.process.proc.pid
        before = rss_mib(pid)
        socks = [_connect(proxy) for _ in range(CONNECTIONS)]
        try:
            peak = 0.0
            for sock in socks:
                _send(sock, chunks())
                peak = max(peak, rss_mib(pid) - before)
            outcomes = _outcomes(socks, timeout=10)
            peak = max(peak, rss_mib(pid) - before)
        finally:
            for sock in socks:
                sock.close()
        assert _served(proxy) == 200

    assert peak < MAX_GROWTH_MIB, f"RSS grew {peak:.0f} MiB for {CONNECTIONS} connections"
    assert all(o.closed for o in outcomes), "a connection was left open"
    codes = {o.goaway.error_code if o.goaway else None for o in outcomes}
    assert codes == {error_code}, codes
    assert not [r for r in emulator.requests() if r["path"] == "/api"]


def test_a_header_block_is_judged_as_it_passes_the_limit(limited: Proxy) -> None:
    """8 KiB limit. A block still open past it closes the connection at once; one that ends in
    the frame that passes it is decoded, and that stream alone gets the 431 Status."""
    sock = _connect(limited)
    try:
        frames = [
            _frame(HeadersFrame(1), _block_start(b"\x00" * (4 * KIB)), "END_STREAM"),
            _frame(ContinuationFrame(1), b"\x00" * (4 * KIB)),
            _frame(ContinuationFrame(1), b"\x00" * (4 * KIB)),
        ]
        _send(sock, iter(frames))
        [outcome] = _outcomes([sock], timeout=10)
    finally:
        sock.close()
    assert outcome.closed and outcome.goaway is not None
    assert outcome.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert outcome.goaway.additional_data == b"HTTP/2 header block over 8192 bytes before its end"

    sock = _connect(limited)
    encoder = hpack.Encoder()
    auth = ("authorization", basic_header("alice", password_of("alice"))[1])
    try:
        big = [*_pseudo("/version?h2-split"), auth, ("x-filler", "a" * 10000)]
        block = encoder.encode(big, huffman=False)
        small = encoder.encode([*_pseudo("/version?h2-small"), auth], huffman=False)
        frames = [
            _frame(HeadersFrame(1), block[:4000], "END_STREAM"),
            _frame(ContinuationFrame(1), block[4000:7000]),
            _frame(ContinuationFrame(1), block[7000:], "END_HEADERS"),
            _frame(HeadersFrame(3), small, "END_STREAM", "END_HEADERS"),
        ]
        _send(sock, iter(frames))
        statuses = _statuses(sock, {1, 3})
    finally:
        sock.close()
    assert statuses == {1: "431", 3: "200"}


def _pseudo(path: str) -> list[tuple[str, str]]:
    return [(":method", "GET"), (":scheme", "https"), (":authority", "localhost"), (":path", path)]


def _statuses(sock: ssl.SSLSocket, stream_ids: set[int]) -> dict[int, str]:
    """The :status of each stream's response, read frame by frame (one hpack decoder)."""
    decoder = hpack.Decoder()
    statuses: dict[int, str] = {}
    data = b""
    while set(statuses) != stream_ids:
        chunk = sock.recv(65536)
        assert chunk, f"closed with only {statuses}"
        data += chunk
        while len(data) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(data[:9]))
            if len(data) < 9 + length:
                break
            frame.parse_body(memoryview(data[9 : 9 + length]))
            data = data[9 + length :]
            if isinstance(frame, HeadersFrame):
                headers = dict(decoder.decode(frame.data))
                statuses[frame.stream_id] = headers[":status"]
    return statuses
