"""Plain HTTP on the TLS port.

mitmproxy's reverse mode adds TLS only when a connection's first bytes look like a TLS record,
and serves plain HTTP otherwise: `curl http://HOST:PORT/api -u bob:password` was forwarded, the
password sent in clear. The listener now speaks TLS only: a connection whose first bytes are not
a TLS record is closed before anything is read as a request (after Go's answer to an HTTP
request on an HTTPS port, as kube-apiserver gives it).
"""

from __future__ import annotations

import base64
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kube_front_proxy.client.tls_only import Verdict, classify
from tests.support.harness import Emulator, Proxy, start_proxy_for
from tests.support.users import ALICE_PASSWORD

GO_ANSWER = b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
BASIC = base64.b64encode(f"alice:{ALICE_PASSWORD}".encode()).decode()
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@pytest.fixture(scope="module")
def recorded(
    pki: Path, emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    """A proxy that saves its flows and logs at debug level, where any byte would show."""
    workdir = tmp_path_factory.mktemp("plain")
    with start_proxy_for(
        pki, workdir, emulator.port, "-w", str(workdir / "flows.mitm"),
        "--set", "termlog_verbosity=debug", upstream={"check_cluster_trust": False},
    ) as proxy:  # fmt: skip
        yield proxy


def send_plain(port: int, data: bytes) -> bytes:
    """Send data on a plain TCP connection; everything the proxy answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        return b"".join(iter(lambda: sock.recv(65536), b""))


def assert_nothing_kept(proxy: Proxy, emulator: Emulator, before: int) -> None:
    assert emulator.requests()[before:] == []
    secrets = [ALICE_PASSWORD.encode(), BASIC.encode()]
    secrets += [s.hex().encode() for s in secrets]
    flows = proxy.workdir / "flows.mitm"
    kept = flows.read_bytes() if flows.exists() else b""
    log = proxy.process.output().encode()
    for secret in secrets:
        assert secret not in kept and secret not in log


REQUESTS = {
    "http1": (
        f"GET /api HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {BASIC}\r\nConnection: close\r\n\r\n"
    ).encode(),
    "http1-post": (
        f"POST /api/v1/namespaces HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {BASIC}\r\n"
        "Connection: close\r\nContent-Length: 2\r\n\r\n{}"
    ).encode(),
}


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_a_plain_http_request_gets_gos_answer_and_is_never_read(
    recorded: Proxy, emulator: Emulator, name: str
) -> None:
    before = len(emulator.requests())
    assert send_plain(recorded.port, REQUESTS[name]) == GO_ANSWER
    assert_nothing_kept(recorded, emulator, before)
    assert "refused a connection that does not start with TLS" in recorded.process.output()


@pytest.mark.parametrize(
    "data",
    [H2_PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00", b"\x00\x01binary", b"SSH-2.0-x\r\n"],
    ids=["h2c-prior-knowledge", "binary", "ssh"],
)
def test_other_plain_bytes_are_closed_without_an_answer(
    recorded: Proxy, emulator: Emulator, data: bytes
) -> None:
    before = len(emulator.requests())
    assert send_plain(recorded.port, data + f"Authorization: Basic {BASIC}\r\n".encode()) == b""
    assert_nothing_kept(recorded, emulator, before)


def test_curl_over_http_is_refused(recorded: Proxy, emulator: Emulator) -> None:
    before = len(emulator.requests())
    result = subprocess.run(
        ["curl", "-sS", "-u", f"alice:{ALICE_PASSWORD}", f"http://127.0.0.1:{recorded.port}/api"],
        capture_output=True, timeout=30,
    )  # fmt: skip
    assert b"Client sent an HTTP request to an HTTPS server." in result.stdout + result.stderr
    assert_nothing_kept(recorded, emulator, before)


def test_tls_on_the_same_port_still_serves(recorded: Proxy) -> None:
    assert recorded.whoami()["username"] == "alice"


@pytest.mark.parametrize(
    ("data", "verdict"),
    [
        (b"\x16", Verdict.TLS), (b"\x16\x03", Verdict.TLS), (b"\x16\x03\x01\x02\x00", Verdict.TLS),
        (b"\x17\x03\x03", Verdict.PLAIN), (b"\x00", Verdict.PLAIN),
        (b"GET /", Verdict.HTTP), (b"PUT /api", Verdict.HTTP), (b"OPTIONS /", Verdict.HTTP),
        (b"HEAD /", Verdict.HTTP), (b"POST /api", Verdict.HTTP),
        # Go answers only these five starts; the rest is closed without an answer.
        (b"G", Verdict.PLAIN), (b"PRI * HTTP/2.0", Verdict.PLAIN), (b"DELETE /x", Verdict.PLAIN),
    ],
)  # fmt: skip
def test_classify_first_bytes(data: bytes, verdict: Verdict) -> None:
    assert classify(data) == verdict
