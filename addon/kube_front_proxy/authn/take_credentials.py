"""Taking every credential a client sent out of its request, wherever it was put.

A credential must reach neither the API server nor anything that keeps a flow (mitmweb, `-w`
files) or a log, whether or not the login succeeds. Checking one header name in one place
missed the other places a credential can ride in, so every flow goes through here first:

- `Authorization` and `Proxy-Authorization`, in any case, whatever whitespace a malformed head
  put around the name (`Authorization :` is refused by mitmproxy's header validation, but its
  flow would still be saved);
- kube-apiserver's WebSocket bearer subprotocol (`Sec-WebSocket-Protocol:
  base64url.bearer.authorization.k8s.io.<token>`), taken out of the offered list, on any request
  (only a WebSocket request's counts as a login, as in kube-apiserver);
- request trailers (HTTP/2 trailing HEADERS, HTTP/1.1 chunked trailers): kube-apiserver never
  reads them, so they are dropped whole. They arrive after the head: `drop_trailers` runs in the
  `request` hook, before mitmproxy sends them on (seam/http1_trailers.py drops HTTP/1.1 ones
  while they are read).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mitmproxy import http

from kube_front_proxy.authn.credentials import WEBSOCKET_BEARER_PREFIX, WebSocketProtocols

_CREDENTIAL_HEADERS = frozenset({b"authorization", b"proxy-authorization"})
_PROTOCOL_HEADER = b"sec-websocket-protocol"
_BEARER_PREFIX = WEBSOCKET_BEARER_PREFIX.encode()


@dataclass(frozen=True)
class SentCredentials:
    """What the client sent to log in with, for authentication.Login; never kept in a flow."""

    authorization: tuple[str, ...] = field(default=(), repr=False)
    websocket: WebSocketProtocols | None = None


def take_credentials(request: http.Request) -> SentCredentials:
    """Remove every credential from the request's head; return them."""
    authorization: list[str] = []
    bearer: list[str] = []
    others = 0
    kept: list[tuple[bytes, bytes]] = []
    for name, value in request.headers.fields:
        lowered = name.strip().lower()
        if lowered in _CREDENTIAL_HEADERS:
            if lowered == b"authorization":
                authorization.append(value.decode("utf-8", "surrogateescape"))
            continue
        if lowered == _PROTOCOL_HEADER:
            offered = [p.strip() for p in value.split(b",") if p.strip()]
            tokens = [p for p in offered if p.startswith(_BEARER_PREFIX)]
            rest = [p for p in offered if not p.startswith(_BEARER_PREFIX)]
            others += len(rest)
            if tokens:
                bearer += [t.decode("utf-8", "surrogateescape") for t in tokens]
                if rest:
                    kept.append((name, b", ".join(rest)))
                continue
        kept.append((name, value))
    if len(kept) != len(request.headers.fields) or bearer:
        request.headers.fields = tuple(kept)
    websocket = None
    if bearer and _is_websocket(request):
        websocket = WebSocketProtocols(tuple(bearer), others)
    return SentCredentials(tuple(authorization), websocket)


def drop_trailers(request: http.Request) -> None:
    request.trailers = None


def _is_websocket(request: http.Request) -> bool:
    """k8s.io/apiserver pkg/util/wsstream IsWebSocketRequest: Connection has the upgrade token
    and Upgrade is websocket."""
    connection = ",".join(request.headers.get_all("connection")).lower()
    upgrade = request.headers.get("upgrade", "").strip().lower()
    return upgrade == "websocket" and "upgrade" in (t.strip() for t in connection.split(","))
