"""Reading credentials: HTTP Basic (RFC 7617) and Bearer tokens from Authorization headers, and
kube-apiserver's WebSocket bearer subprotocol."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass, field


class MalformedCredentials(ValueError):
    """The Authorization header is present but unusable; the message never holds the secret.

    The message is a fixed phrase (it labels a metric); the detail, for the log only, may say
    what the client sent.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.detail = detail


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class BearerToken:
    token: str = field(repr=False)


# kube-apiserver's websocket.ProtocolAuthenticator: browsers cannot set an Authorization header
# on a WebSocket, so they offer `Sec-WebSocket-Protocol: base64url.bearer.authorization.k8s.io.
# <base64url without padding of the token>` next to the real subprotocol.
WEBSOCKET_BEARER_PREFIX = "base64url.bearer.authorization.k8s.io."
_BASE64URL_RAW = re.compile(r"[A-Za-z0-9_-]*")


@dataclass(frozen=True)
class WebSocketProtocols:
    """A WebSocket request's bearer subprotocols (prefix included) and how many others it
    offered."""

    bearer: tuple[str, ...] = field(repr=False)
    others: int


def parse_websocket_bearer(protocols: WebSocketProtocols) -> BearerToken | None:
    """The token of the bearer subprotocol, by the rules of kube-apiserver's
    k8s.io/apiserver/pkg/authentication/request/websocket/protocol.go; None if there is none."""
    if not protocols.bearer:
        return None
    if len(protocols.bearer) > 1:
        raise MalformedCredentials("more than one WebSocket bearer token")
    encoded = protocols.bearer[0].removeprefix(WEBSOCKET_BEARER_PREFIX)
    # Go's base64.RawURLEncoding: the URL alphabet, no padding.
    if not _BASE64URL_RAW.fullmatch(encoded) or len(encoded) % 4 == 1:
        raise MalformedCredentials("WebSocket bearer token is not base64url")
    try:
        token = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8")
    except (binascii.Error, ValueError):
        raise MalformedCredentials("WebSocket bearer token is not base64url of UTF-8") from None
    if not token:
        return None
    if not protocols.others:
        # The server must have another subprotocol to answer with.
        raise MalformedCredentials("WebSocket bearer token without another subprotocol")
    return BearerToken(token)


def parse_credentials(
    authorization: Sequence[str], websocket: WebSocketProtocols | None = None
) -> Credentials | BearerToken | None:
    """The request's one credential: from Authorization, or a WebSocket's bearer subprotocol."""
    from_websocket = parse_websocket_bearer(websocket) if websocket else None
    if from_websocket is None:
        return parse_authorization(authorization)
    if authorization:
        raise MalformedCredentials("both an Authorization header and a WebSocket bearer token")
    return from_websocket


def parse_authorization(authorization: Sequence[str]) -> Credentials | BearerToken | None:
    """Basic credentials or a bearer token; None if there is no Authorization header."""
    if len(authorization) == 1:
        scheme, _, token = authorization[0].strip().partition(" ")
        if scheme.lower() == "bearer":
            token = token.strip()
            if not token or " " in token:
                raise MalformedCredentials("malformed Bearer token")
            return BearerToken(token)
    return parse_basic(authorization)


def parse_basic(authorization: Sequence[str]) -> Credentials | None:
    """The Basic credentials in the Authorization header values; None if there are none."""
    if not authorization:
        return None
    if len(authorization) > 1:
        raise MalformedCredentials("more than one Authorization header")
    scheme, _, token = authorization[0].strip().partition(" ")
    if scheme.lower() != "basic":
        raise MalformedCredentials("unsupported authorization scheme", _scheme_detail(scheme))
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise MalformedCredentials("Basic credentials are not valid base64 of UTF-8") from None
    username, colon, password = decoded.partition(":")
    if not colon:
        raise MalformedCredentials("Basic credentials have no ':' separator")
    return Credentials(username, password)


# Schemes named in the log when refused. Anything else may be a bare token sent without a
# scheme (a credential), so it is not quoted.
_KNOWN_SCHEMES = frozenset(
    {"bearer", "digest", "negotiate", "ntlm", "hoba", "mutual", "token", "oauth", "vapid"}
)


def _scheme_detail(scheme: str) -> str:
    if scheme.lower() in _KNOWN_SCHEMES:
        return f"scheme {scheme!r}"
    return "scheme not shown: it may be a credential sent without one"
