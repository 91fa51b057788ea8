"""kubectl over HTTP/2 or HTTP/1.1 (client-go's DISABLE_HTTP2), and alice as the API server
then receives her from the proxy."""

from __future__ import annotations

from typing import Any

from .users import ALICE_LINES

CLIENT_ENV = {"h2": {}, "http1": {"DISABLE_HTTP2": "1"}}
VERSION = {"h2": "HTTP/2.0", "http1": "HTTP/1.1"}


def assert_identity(record: dict[str, Any], client_h2: bool) -> None:
    """alice, from the proxy: lower-case names for HTTP/2 clients, else as configured."""
    lines = [[n, v] for n, v in record["headers"] if n.lower().startswith("x-remote-")]
    assert lines == [[n.lower() if client_h2 else n, v] for n, v in ALICE_LINES]
    assert record["peer_cert_cn"] == "front-proxy-client"
    assert record["authentication"]["user"]["username"] == "alice"
