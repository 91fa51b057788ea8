"""The request head limit over HTTP/2: the same 431 Status as over HTTP/1, for that stream only,
measured as SETTINGS_MAX_HEADER_LIST_SIZE counts (RFC 9113 6.5.2). Client: the h2 library over
ssl (a mitmproxy dependency), so the proxy sees real HTTP/2 frames."""

from __future__ import annotations

import json

from mitmproxy.test import tutils

from kube_front_proxy.client.request_limits import http2_head_size
from tests.support.harness import Emulator, Proxy
from tests.support.users import basic_header, password_of

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


def test_an_http2_head_over_the_limit_gets_a_431_status(limited: Proxy, emulator: Emulator) -> None:
    client = limited.h2("localhost")
    try:
        big = client.response(client.request("GET", "/version?h2-big", headers(9000)))
        assert (big.status, bytes(big.data)) == (431, TOO_LARGE)
        assert not [r for r in emulator.requests() if r["path"].endswith("h2-big")]
        # Only that stream was refused: the connection serves the next request.
        small = client.response(client.request("GET", "/version?h2-small", headers(7000)))
    finally:
        client.close()
    assert small.status == 200 and json.loads(small.data)["major"] == "1"
    assert [r["path"] for r in emulator.requests() if "h2-" in r["path"]] == ["/version?h2-small"]


def headers(filler: int) -> list[tuple[str, str]]:
    return [(GOOD[0].lower(), GOOD[1]), ("x-filler", "a" * filler)]
