"""Answers lost to a TCP reset: the proxy refuses a client that is still sending, and closes.

A client that writes its whole request before it reads (Python's http.client, a pipelining
HTTP/2 attacker) was answered, then the proxy closed its socket at once: the kernel answered the
bytes still coming with a TCP RST, the client's next write failed ("connection reset",
SSLEOFError) and the client gave up before reading, so the answer (the 401 or 413 Status; the
GOAWAY's code: test_rapid_reset.py) was lost. Now the proxy half-closes and reads on for a
bounded time and amount (`kube_front_proxy.seam.lingering_close`), and a client that sends on
past those bounds is cut off.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import time

import pytest

from kube_front_proxy.seam import lingering_close
from tests.support.api_paths import CONFIGMAPS
from tests.support.harness import Proxy
from tests.support.users import basic_header, password_of
from tests.support.waiting import wait_until

MIB = 1024 * 1024
BODY_LIMIT = 3 * MIB  # limits.max_request_body_mb, by default
CLOSE_WAIT = 8  # tcp_states.h: the peer has sent its FIN


def upload_head(marker: str, length: int, auth: tuple[str, str] | None) -> bytes:
    lines = [f"POST {CONFIGMAPS}?{marker} HTTP/1.1", "Host: x", f"Content-Length: {length}",
             "Content-Type: application/json"]  # fmt: skip
    if auth:
        lines.append(f"{auth[0]}: {auth[1]}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def refused(proxy: Proxy, marker: str, length: int, auth: tuple[str, str] | None) -> ssl.SSLSocket:
    """A connection whose upload head the proxy has answered and closed its side of (its FIN
    has come: the state is CLOSE_WAIT), before the body is sent; nothing read yet."""
    sock = proxy.connect()
    sock.sendall(upload_head(marker, length, auth))
    wait_until(lambda: sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == CLOSE_WAIT)
    return sock


def read_all(sock: ssl.SSLSocket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def status_of(answer: bytes) -> tuple[int, dict[str, str], dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    assert len(body) == int(headers["content-length"]), "the answer was cut short"
    return int(lines[0].split()[1]), headers, json.loads(body)


REFUSALS = [
    pytest.param(None, BODY_LIMIT, 401, id="401-no-login"),
    pytest.param(
        basic_header("alice", password_of("alice")),
        BODY_LIMIT + 1,
        413,
        id="413-over-the-body-limit",
    ),
]


@pytest.mark.parametrize(("auth", "length", "status"), REFUSALS)
def test_a_refused_upload_sent_on_regardless_still_gets_its_answer(
    proxy: Proxy, auth: tuple[str, str] | None, length: int, status: int
) -> None:
    """The answer and the proxy's FIN are there before the body is sent; the client sends the
    body anyway, then reads. Before: its first write failed every time (SSLEOFError: the
    proxy's socket was gone and reset the connection), and the client gave up."""
    chunk = b"x" * 65536  # as a client streaming its body from a file does
    with refused(proxy, f"sent-on-{status}", length, auth) as sock:
        for offset in range(0, length, len(chunk)):
            sock.sendall(chunk[: length - offset])
        answer = read_all(sock)  # to the proxy's close_notify
    code, headers, body = status_of(answer)
    assert (code, body["code"]) == (status, status)
    assert headers["connection"] == "close"
    assert "has crashed" not in proxy.process.output()


def test_a_client_sending_on_is_cut_off_at_the_byte_bound(proxy: Proxy) -> None:
    """At most LINGER_BYTES are read after the answer: an endless body is cut off (its answer
    may go with it: that client chose not to read)."""
    bound = lingering_close.LINGER_BYTES
    with refused(proxy, "endless", 1 << 40, None) as sock:
        sent = 0
        with contextlib.suppress(OSError):
            while sent < 4 * bound:
                sock.sendall(b"x" * MIB)
                sent += MIB
    print(f"cut off after {sent / MIB:.0f} MiB")
    assert sent < 4 * bound


def test_a_slow_client_is_cut_off_at_the_deadline(proxy: Proxy) -> None:
    """A client that sends a byte now and then, and never closes, is closed LINGER_SECONDS
    after the answer: its next byte is answered with a reset."""
    with refused(proxy, "slow", BODY_LIMIT, None) as sock:
        started = time.monotonic()
        with contextlib.suppress(OSError):
            while time.monotonic() - started < 10 * lingering_close.LINGER_SECONDS:
                sock.sendall(b"x")
                time.sleep(0.1)  # the scenario: a byte now and then
        waited = time.monotonic() - started
    print(f"cut off after {waited:.2f} s")
    assert waited < 10 * lingering_close.LINGER_SECONDS


# -- the bounds, on a socket pair -------------------------------------------------------------


def _discard(send: bytes, close: bool, max_bytes: int, seconds: float) -> int:
    async def run() -> int:
        ours, theirs = socket.socketpair()
        with ours, theirs:
            ours.setblocking(False)
            theirs.sendall(send)
            if close:
                theirs.shutdown(socket.SHUT_WR)
            deadline = asyncio.get_running_loop().time() + seconds
            return await lingering_close.discard(ours, deadline, max_bytes)

    return asyncio.run(run())


def test_discard_reads_to_the_peers_end() -> None:
    assert _discard(b"x" * 100_000, close=True, max_bytes=MIB, seconds=30) == 100_000


def test_discard_stops_at_its_byte_bound() -> None:
    # One read past the bound at most (64 KiB reads).
    dropped = _discard(b"x" * 200_000, close=False, max_bytes=64 * 1024, seconds=30)
    assert 64 * 1024 <= dropped < 200_000


def test_discard_stops_at_its_deadline() -> None:
    assert _discard(b"x" * 1000, close=False, max_bytes=MIB, seconds=0.2) == 1000
