"""Keep the API servers' addresses from clients: they only ever see the proxy's.

What kube-apiserver itself sends that can name it:
- `serverAddressByClientCIDRs` in legacy discovery (`/api`, `/apis`): its advertise address
  (k8s.io/apiserver pkg/endpoints/discovery/legacy.go, group.go; pkg/server/config.go
  ServerAddressByClientCIDRs), rewritten to the address the client reached the proxy on;
- a `Location` header pointing at itself (redirects such as `/logs` -> `/logs/`), and any
  address inside `Warning` headers or Status bodies: each upstream `host:port` becomes the
  proxy's;
- a `Server` header: dropped (kube-apiserver sends none; anything in front of it might).

Only those are touched: other bodies are the users' data (kubeadm's cluster-info ConfigMap
holds the API server URL on purpose).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from mitmproxy import http

from .upstreams import Address

_DISCOVERY_KEY = b'"serverAddressByClientCIDRs"'
_STATUS_KIND = b'"kind":"Status"'
_WATCHED_HEADERS = frozenset((b"server", b"location", b"content-location", b"warning"))


class UpstreamHider:
    """Rewrites responses for one set of upstream addresses."""

    def __init__(self, upstreams: Sequence[Address]) -> None:
        self._authorities = [_authority(a) for a in upstreams]

    def headers(self, response: http.Response, proxy: Address) -> None:
        """Before the response head goes to the client."""
        # One pass over the raw fields first: most responses have none of these headers.
        if not any(name.lower() in _WATCHED_HEADERS for name, _ in response.headers.fields):
            return
        response.headers.pop("server", None)
        ours = _authority(proxy)
        for name in ("location", "content-location", "warning"):
            values = response.headers.get_all(name)
            if any(a in v for v in values for a in self._authorities):
                response.headers.set_all(name, [self._replace(v, ours) for v in values])

    def body(self, response: http.Response, proxy: Address) -> None:
        """For a buffered response, before it goes to the client."""
        if "json" not in response.headers.get("content-type", ""):
            return
        content = response.get_content(strict=False)
        if not content:
            return
        ours = _authority(proxy)
        if _DISCOVERY_KEY in content:
            response.content = _rewrite_discovery(content, ours)
        elif _STATUS_KIND in content:
            text = content.decode("utf-8", "surrogateescape")
            if any(a in text for a in self._authorities):
                response.content = self._replace(text, ours).encode("utf-8", "surrogateescape")

    def _replace(self, value: str, ours: str) -> str:
        for authority in self._authorities:
            value = value.replace(authority, ours)
        return value


def _authority(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _rewrite_discovery(content: bytes, ours: str) -> bytes:
    doc = json.loads(content)
    if not isinstance(doc, dict):
        return content
    for holder in [doc, *(g for g in doc.get("groups") or () if isinstance(g, dict))]:
        for entry in holder.get("serverAddressByClientCIDRs") or ():
            if isinstance(entry, dict) and "serverAddress" in entry:
                entry["serverAddress"] = ours
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"
