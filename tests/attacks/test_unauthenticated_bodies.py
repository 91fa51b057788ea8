"""Unauthenticated bodies: a request the proxy refuses never has its body read into memory.

The attack: many clients without a valid login send large bodies (up to `max_request_body_mb`).
mitmproxy reads a whole body before it answers a request an addon refused, and reads on while
the login is checked; it also sends `100 Continue` to a request it is about to refuse. Measured
on the proxy's own process (VmRSS), sampled while the attack runs.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.api_paths import CONFIGMAPS
from tests.support.harness import Emulator, Proxy, start_proxy_for
from tests.support.http2 import H2Response
from tests.support.measure import PeakRss
from tests.support.users import basic_header, password_of

MIB = 1024 * 1024
BODY = 3 * MIB  # the default body limit: the largest body the proxy accepts
GROWTH_BOUND_MIB = 40


@pytest.fixture(scope="module")
def proxy(
    pki: Path, emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    with start_proxy_for(pki, tmp_path_factory.mktemp("bodies"), emulator.port,
                         "--set", "flow_detail=0") as p:  # fmt: skip
        yield p


def head(marker: str, auth: tuple[str, str] | None, *extra: str) -> bytes:
    lines = [f"POST {CONFIGMAPS}?{marker} HTTP/1.1", "Host: x", f"Content-Length: {BODY}",
             "Content-Type: application/json", *extra]  # fmt: skip
    if auth:
        lines.append(f"{auth[0]}: {auth[1]}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_head(sock: ssl.SSLSocket) -> tuple[int, bytes]:
    """The status and raw bytes of the next response head (and whatever came with it)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1]) if data else 0, data


def upload(proxy: Proxy, marker: str, auth: tuple[str, str] | None, source: str) -> int:
    """One HTTP/1.1 upload of BODY bytes sent at once, as an attacker would; the status."""
    with proxy.connect(source) as sock:
        with contextlib.suppress(OSError):  # refused and closed while sending
            sock.sendall(head(marker, auth) + b"x" * BODY)
        return read_head(sock)[0]


def reached(emulator: Emulator, marker: str) -> list[str]:
    return [r["path"] for r in emulator.requests() if marker in r["path"]]


@pytest.mark.parametrize(
    "user",
    [None, "nobody"],
    ids=["no-credentials", "wrong-password"],
)
def test_http1_uploads_without_a_login_are_not_held(
    proxy: Proxy, emulator: Emulator, user: str | None
) -> None:
    assert proxy.raw("GET", "/version", [basic_header("alice", password_of("alice"))])[0] == 200
    marker = f"h1-{user or 'anonymous'}"

    def attempt(i: int) -> int:
        # Wrong passwords for 30 user names (no lock-out), from an address of its own (30
        # failures must not lock 127.0.0.1 out of the other tests).
        auth = basic_header(f"{user}-{i}", "guess") if user else None
        return upload(proxy, f"{marker}-{i}", auth, "127.0.0.7")

    with PeakRss(proxy.process.proc.pid) as rss, ThreadPoolExecutor(30) as pool:
        statuses = list(pool.map(attempt, range(30)))
    assert statuses == [401] * 30
    assert rss.growth < GROWTH_BOUND_MIB, f"30 x 3 MiB grew the proxy by {rss.growth:.0f} MiB"
    assert reached(emulator, marker) == []


def test_http2_uploads_without_a_login_are_not_held(proxy: Proxy, emulator: Emulator) -> None:
    """100 streams on one connection, each with nearly 3 MiB of DATA and never ended: mitmproxy
    held every one of them, waiting for the end of a body it would then refuse."""
    client = proxy.h2("localhost")
    conn = client.conn
    try:
        # The proxy's SETTINGS and WINDOW_UPDATE open its windows (mitmproxy: 2^31-1).
        client.wait(lambda: conn.outbound_flow_control_window > BODY)
        streams = []
        with PeakRss(proxy.process.proc.pid) as rss:
            for i in range(100):
                stream_id = conn.get_next_available_stream_id()
                conn.send_headers(stream_id, [
                    (":method", "POST"), (":scheme", "https"), (":authority", client.authority),
                    (":path", f"{CONFIGMAPS}?h2-anonymous-{i}"),
                    ("content-length", str(BODY)),
                ])  # fmt: skip
                frame = conn.max_outbound_frame_size
                for _ in range(BODY // frame - 1):  # all but the last frame: never complete
                    conn.send_data(stream_id, b"x" * frame)
                client.responses[stream_id] = H2Response()
                streams.append(stream_id)
                client.sock.sendall(conn.data_to_send())
            answered = [client.responses[s] for s in streams]
            with contextlib.suppress(AssertionError, TimeoutError):  # mitmproxy never answers
                client.wait(lambda: all(r.ended for r in answered), timeout=20)
        assert rss.growth < GROWTH_BOUND_MIB, f"100 x 3 MiB grew the proxy by {rss.growth:.0f} MiB"
        assert [r.status for r in answered] == [401] * 100
        # The connection still serves a logged-in request afterwards.
        name, value = basic_header("alice", password_of("alice"))
        good = client.response(client.request("GET", "/version", [(name.lower(), value)]))
        assert good.status == 200
    finally:
        client.close()
    assert reached(emulator, "h2-anonymous") == []


@contextmanager
def _expect_continue(
    proxy: Proxy, marker: str, auth: tuple[str, str] | None
) -> Iterator[tuple[ssl.SSLSocket, int, bytes]]:
    with proxy.connect() as sock:
        sock.sendall(head(marker, auth, "Expect: 100-continue"))
        status, data = read_head(sock)
        yield sock, status, data


def test_100_continue_only_after_the_login(proxy: Proxy, emulator: Emulator) -> None:
    with _expect_continue(proxy, "continue-anonymous", None) as (sock, status, data):
        # The answer is the refusal itself, and nothing more is read: the connection closes.
        assert status == 401, data
        assert b"connection: close" in data.lower()
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
        assert b"HTTP/1.1 100" not in data + rest
    good = basic_header("alice", password_of("alice"))
    with _expect_continue(proxy, "continue-alice", good) as (sock, status, _):
        assert status == 100
        sock.sendall(b"{}".ljust(BODY))
        assert read_head(sock)[0] == 405  # the emulator has no configmaps: it got the body
    assert reached(emulator, "continue-anonymous") == []
    assert len(reached(emulator, "continue-alice")) == 1
