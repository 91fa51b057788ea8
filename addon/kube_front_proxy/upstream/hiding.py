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
holds the API server URL on purpose), and so are the bodies the API server passes through from
elsewhere: `pods/proxy`, `services/proxy`, `nodes/proxy` answer with a backend's body as that
backend encoded it. A body is looked into only when it can carry the address: a discovery
document (by its path), or a Status from the API server (its first decoded bytes say
`{"kind":"Status"`, and the request is no proxy subresource). That look decodes at most
MAX_DECODED bytes (`upstream/bounded_decode.py`): a gzip bomb costs what its first MiB costs, and
every other JSON response costs a peek at its first 64 decoded bytes.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from urllib.parse import unquote

from mitmproxy import http

from kube_front_proxy.observe.request_info import RequestInfoError, parse_request_info
from kube_front_proxy.upstream.bounded_decode import decoded_body, decoded_prefix
from kube_front_proxy.upstream.pool import Address

logger = logging.getLogger("kube_front_proxy")

# Discovery and Status bodies are a few KB (/apis of a cluster with a thousand API groups is
# about 0.3 MB); kube-apiserver gzips responses over 128 KB for clients that accept it.
MAX_DECODED = 1 << 20
_PEEK = 64
_DISCOVERY_PATH = re.compile(r"/apis?/?|/apis/[^/]+/?")
_STATUS_START = re.compile(rb'\s*\{\s*"kind"\s*:\s*"Status"')
_DISCOVERY_KEY = b'"serverAddressByClientCIDRs"'
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

    def body(self, request: http.Request, response: http.Response, proxy: Address) -> None:
        """For a buffered response, before it goes to the client."""
        raw = response.raw_content
        if not raw or "json" not in response.headers.get("content-type", ""):
            return
        coding = response.headers.get("content-encoding", "")
        discovery = _DISCOVERY_PATH.fullmatch(unquote(request.path.split("?", 1)[0]))
        if not discovery:
            start = decoded_prefix(raw, coding, _PEEK)
            if start is None or not _STATUS_START.match(start) or _passed_through(request):
                return
        content = decoded_body(raw, coding, MAX_DECODED)
        if content is None:
            logger.warning(
                "kube-front-proxy: %s %s: upstream addresses not looked for: the body is "
                "over %d bytes decoded, or its encoding (%r) is not decoded here",
                request.method,
                request.path.split("?", 1)[0][:200],
                MAX_DECODED,
                coding[:50],
            )
            return
        ours = _authority(proxy)
        if discovery:
            if _DISCOVERY_KEY in content:
                response.content = _rewrite_discovery(content, ours)
            return
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


def _passed_through(request: http.Request) -> bool:
    """A proxy subresource (pods, services, nodes) or the old proxy verb: the body is a
    backend's, not the API server's."""
    try:
        info = parse_request_info(request.method, request.path)
    except RequestInfoError as e:
        info = e.info
    return info.verb == "proxy" or info.subresource == "proxy"


def _rewrite_discovery(content: bytes, ours: str) -> bytes:
    doc = json.loads(content)
    if not isinstance(doc, dict):
        return content
    for holder in [doc, *(g for g in doc.get("groups") or () if isinstance(g, dict))]:
        for entry in holder.get("serverAddressByClientCIDRs") or ():
            if isinstance(entry, dict) and "serverAddress" in entry:
                entry["serverAddress"] = ours
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"
