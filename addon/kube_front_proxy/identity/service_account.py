"""The proxy's service-account token in impersonation mode, kept out of every flow.

Flows are shown in mitmweb and saved with `-w`, so the token must not be in one. The request
carries a placeholder Authorization value instead; the real token replaces it only in the bytes
written to an API server: mitmproxy's HTTP/1 request-head encoder is wrapped
(seam/upstream_token.py; impersonation mode speaks HTTP/1.1 upstream) to call the seam policy's
TokenInjector, which puts it only into https requests to a configured server, whose certificate
tls.py verifies. A replayed or edited flow aimed anywhere else keeps the placeholder.
"""

from __future__ import annotations

from collections.abc import Collection

from mitmproxy import http

PLACEHOLDER = b"Bearer <kube-front-proxy service-account token>"
CREDENTIAL_LINE = (b"Authorization", PLACEHOLDER)
_MARKED = b"\r\nAuthorization: " + PLACEHOLDER + b"\r\n"


class TokenInjector:
    """Puts the current token into request heads bound for the API servers."""

    def __init__(self) -> None:
        self.token: bytes | None = None
        self.servers: Collection[tuple[str, int]] = ()

    def use(self, token: bytes | None, servers: Collection[tuple[str, int]]) -> None:
        self.token = token
        self.servers = frozenset(servers)

    def inject(self, request: http.Request, head: bytes) -> bytes:
        if self.token is None or _MARKED not in head:
            return head
        if request.scheme != "https" or (request.host, request.port) not in self.servers:
            return head
        return head.replace(_MARKED, b"\r\nAuthorization: Bearer " + self.token + b"\r\n", 1)


def read_token(data: bytes) -> bytes | None:
    """The token in a token file's bytes, or None if it cannot be sent as a header value."""
    token = data.strip()
    if not token or any(b < 0x21 or b > 0x7E for b in token):
        return None
    return token
