"""The request head limit over HTTP/2: the same 431 Status as over HTTP/1, for that stream only,
measured as SETTINGS_MAX_HEADER_LIST_SIZE counts (RFC 9113 6.5.2). Client: the h2 library over
ssl (a mitmproxy dependency), so the proxy sees real HTTP/2 frames."""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import pytest
from mitmproxy.test import tutils

from kube_front_proxy.request_limits import http2_head_size

from .e2e import Emulator, Proxy, basic_header, password_of, start_proxy_for

GOOD = basic_header("alice", password_of("alice"))
TOO_LARGE = (
    b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
    b'"message":"the request headers are too large","reason":"RequestEntityTooLarge",'
    b'"code":431}\n'
)


def test_http2_head_size() -> None:
    request = tutils.treq(method=b"GET", scheme=b"https", authority=b"k:1", path=b"/api",
                          http_version=b"HTTP/2.0", headers=((b"x-a", b"bc"),))  # fmt: skip
    # (7+3) + (7+5) + (10+3) + (5+4) + (3+2), plus 32 per field
    assert http2_head_size(request) == 49 + 5 * 32


class H2Client:
    """One HTTP/2 connection to the proxy; requests run one at a time."""

    def __init__(self, proxy: Proxy) -> None:
        context = ssl.create_default_context(cafile=str(proxy.pki / "proxy-ca.crt"))
        context.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        self.sock = context.wrap_socket(raw, server_hostname="localhost")
        assert self.sock.selected_alpn_protocol() == "h2"
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())

    def get(self, path: str, headers: list[tuple[str, str]]) -> tuple[int, bytes]:
        stream = self.conn.get_next_available_stream_id()
        pseudo = [(":method", "GET"), (":scheme", "https"), (":authority", "localhost"),
                  (":path", path)]  # fmt: skip
        self.conn.send_headers(stream, pseudo + [(k.lower(), v) for k, v in headers], True)
        self.sock.sendall(self.conn.data_to_send())
        status, body = 0, b""
        while True:
            data = self.sock.recv(65536)
            assert data, "connection closed"
            for event in self.conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    self.conn.acknowledge_received_data(event.flow_controlled_length, stream)
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                    self.sock.sendall(self.conn.data_to_send())
                    return status, body
            self.sock.sendall(self.conn.data_to_send())


@pytest.fixture(scope="module")
def limited(
    pki: Path, emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    p = start_proxy_for(
        pki, tmp_path_factory.mktemp("limited-h2"), emulator.port,
        limits={"max_request_header_kb": 8},
    )  # fmt: skip
    yield p
    p.process.stop()


def test_an_http2_head_over_the_limit_gets_a_431_status(limited: Proxy, emulator: Emulator) -> None:
    client = H2Client(limited)
    status, body = client.get("/version?h2-big", [GOOD, ("x-filler", "a" * 9000)])
    assert (status, body) == (431, TOO_LARGE)
    assert not [r for r in emulator.requests() if r["path"].endswith("h2-big")]
    # Only that stream was refused: the connection serves the next request.
    status, body = client.get("/version?h2-small", [GOOD, ("x-filler", "a" * 7000)])
    assert status == 200 and json.loads(body)["major"] == "1"
    assert [r["path"] for r in emulator.requests() if "h2-" in r["path"]] == ["/version?h2-small"]
