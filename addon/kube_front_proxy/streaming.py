"""Streams: which responses are passed on as they arrive, and what upgraded ones keep.

mitmproxy buffers a response body until it is complete. A watch (`?watch=true`) or a followed
log (`/log?follow=true`) never completes, so buffering it hangs `kubectl get -w` and
`kubectl logs -f`. The API server sends those, and every other long body, without a
Content-Length (chunked on HTTP/1.1, open-ended DATA frames on HTTP/2): that is the one cheap
test needed. Streaming everything would cost mitmproxy about 15% of its throughput.
"""

from __future__ import annotations

from typing import Any

from mitmproxy import http


def must_stream(response: http.Response) -> bool:
    return "content-length" not in response.headers


def forget_relayed(messages: list[Any]) -> None:
    """Drop the messages an upgraded connection (exec, cp, port-forward) has relayed so far.

    mitmproxy keeps every message of a WebSocket or raw TCP flow until it ends: a long `kubectl
    cp` or port-forward would hold all its bytes in memory (80 to 237 MB for 64 MiB each way).
    The last one is kept: mitmproxy relays it after the hook returns.
    """
    del messages[:-1]
