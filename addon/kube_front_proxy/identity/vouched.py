"""A request leaves for the API server exactly as the proxy vouched for it.

Once the proxy has logged a request in and written its identity headers, the request speaks
for that user over the front-proxy certificate. mitmweb (and mitmproxy's console) can hold
such a request (Intercept) and edit it in place before it is sent: another X-Remote-User, an
extra group, or the same user's request turned into another one (method, path, body). So the
proxy seals what it vouched for, and seam/upstream_send.py compares the request with the seal
just before it is written; a changed request is not sent.

The seal holds the request head as it was at the end of the proxy's requestheaders hook
(method, path, HTTP version, every header line in order) and, once mitmproxy has read a body
that is not streamed, that body (a reference to it: comparing it with itself costs nothing).
Not sealed: the destination, address and Host header (the router chooses it, upstream_retry
changes it, and tls.py verifies every API server, so an edited host gets no identity anywhere
else), and `Expect`, which mitmproxy itself removes after answering `100 Continue`. Code of
this proxy that changes a request after requestheaders must seal it again.
"""

from __future__ import annotations

import weakref
from typing import NamedTuple

from mitmproxy import http

# Not sealed: Host is part of the destination, which the router sets and upstream_retry changes;
# Expect is removed by mitmproxy itself once it has answered `100 Continue`.
_UNSEALED = frozenset((b"host", b"expect"))
_HEAD_PARTS = ("method", "path", "http_version", "headers")

_Head = tuple[bytes, bytes, bytes, tuple[tuple[bytes, bytes], ...]]


class _Seal(NamedTuple):
    head: _Head
    body: bytes | None = None
    body_sealed: bool = False


def _head(request: http.Request) -> _Head:
    """The sealed part of the head, as the raw bytes mitmproxy writes upstream."""
    data = request.data
    fields = tuple(f for f in data.headers.fields if f[0].lower() not in _UNSEALED)
    return data.method, data.path, data.http_version, fields


class Ledger:
    """The seal of each request the proxy vouched for (forgotten with its flow)."""

    def __init__(self) -> None:
        self._seals: weakref.WeakKeyDictionary[http.HTTPFlow, _Seal] = weakref.WeakKeyDictionary()

    def vouch(self, flow: http.HTTPFlow) -> None:
        """The request, as it stands, is what the proxy vouches for."""
        self._seals[flow] = _Seal(_head(flow.request))

    def body_read(self, flow: http.HTTPFlow) -> None:
        """mitmproxy has read the whole body of a request that is not streamed: seal it too."""
        seal = self._seals.get(flow)
        if seal is not None and not flow.request.stream:
            self._seals[flow] = _Seal(seal.head, flow.request.raw_content, True)

    def changed(self, flow: http.HTTPFlow) -> str:
        """What differs from the seal ("" if nothing does)."""
        seal = self._seals.get(flow)
        if seal is None:
            return "the request was never vouched for"
        now = _head(flow.request)
        body_changed = seal.body_sealed and flow.request.raw_content != seal.body
        if now == seal.head and not body_changed:
            return ""
        different = [name for name, a, b in zip(_HEAD_PARTS, now, seal.head, strict=True) if a != b]
        if body_changed:
            different.append("body")
        return "its " + ", ".join(different)


ledger = Ledger()
