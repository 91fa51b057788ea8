"""Reading credentials from Authorization headers: HTTP Basic (RFC 7617) and Bearer tokens."""

from __future__ import annotations

import base64
import binascii
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
        raise MalformedCredentials("unsupported authorization scheme", f"scheme {scheme[:20]!r}")
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise MalformedCredentials("Basic credentials are not valid base64 of UTF-8") from None
    username, colon, password = decoded.partition(":")
    if not colon:
        raise MalformedCredentials("Basic credentials have no ':' separator")
    return Credentials(username, password)
