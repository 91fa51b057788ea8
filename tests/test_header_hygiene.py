"""client/header_hygiene.py without a proxy: Go's rules for request heads, and origin-form."""

from __future__ import annotations

import pytest
from mitmproxy.test import tutils

from kube_front_proxy.client.header_hygiene import (
    BAD_HEADER_VALUE,
    BAD_METHOD,
    BAD_TARGET,
    BAD_TRANSFER_ENCODING,
    malformed_head,
    to_origin_form,
)


@pytest.mark.parametrize(
    ("method", "path", "headers", "refused"),
    [
        (b"GET", b"/api?watch=1", [(b"User-Agent", b"kubectl/v1.32\t(linux)")], None),
        (b"GET", b"/api/\xc3\xa9", [(b"X-A", b"caf\xc3\xa9")], None),  # obs-text is allowed
        (b"GET", b"/api", [(b"Transfer-Encoding", b"Chunked")], None),
        (b"G ET", b"/api", [], BAD_METHOD),
        (b"GET\x1b", b"/api", [], BAD_METHOD),
        (b"GET", b"/api\x1b[2J", [], BAD_TARGET),
        (b"GET", b"/api\x7f", [], BAD_TARGET),
        (b"GET", b"/a\tb", [], BAD_TARGET),
        (b"OPTIONS", b"*", [], BAD_TARGET),
        (b"GET", b"https://evil/api", [], BAD_TARGET),
        (b"GET", b"/api", [(b"X-A", b"a\rb")], BAD_HEADER_VALUE),
        (b"GET", b"/api", [(b"X-A", b"a\r\n b")], BAD_HEADER_VALUE),  # obs-fold, as read
        (b"GET", b"/api", [(b"X-A", b"a\x00b")], BAD_HEADER_VALUE),
        (b"GET", b"/api", [(b"User-Agent", b"\x1b]0;t\x07")], BAD_HEADER_VALUE),
        (b"GET", b"/api", [(b"X-A", b"\x7f")], BAD_HEADER_VALUE),
        (b"POST", b"/api", [(b"Transfer-Encoding", b"gzip, chunked")], BAD_TRANSFER_ENCODING),
    ],
)  # fmt: skip
def test_go_refuses_what_the_proxy_refuses(
    method: bytes, path: bytes, headers: list[tuple[bytes, bytes]], refused: str | None
) -> None:
    request = tutils.treq(method=method, path=path, headers=tuple(headers))
    assert malformed_head(request) == refused


def test_absolute_form_becomes_origin_form() -> None:
    request = tutils.treq(scheme=b"http", authority=b"evil:1234", path=b"/api")
    to_origin_form(request)
    assert (request.data.authority, request.data.scheme) == (b"", b"https")
    h2 = tutils.treq(http_version=b"HTTP/2.0", authority=b"k:443", path=b"/api")
    to_origin_form(h2)
    assert h2.data.authority == b"k:443"  # :authority is HTTP/2's Host
