"""Session tokens: short-lived bearer tokens the proxy issues to a login and checks itself.

A token is a JWT (RFC 7519) in JWS compact form, HS256 with a key derived from
`authn.session_tokens.signing_key_file`, which every replica shares; joserfc makes and checks
the signature. It carries no secret, only who and when:

    header  {"alg": "HS256", "typ": "JWT"}            exactly this, nothing else is accepted
    iss     "kube-front-proxy"
    sub     the user
    src     the authenticator of the login it was issued to (htpasswd, token, x509, oidc)
    jti     its id, 128 random bits: named in the audit log, revoked by it
    iat     issued at; exp: expires at (at most ttl_seconds later, never after the
            certificate or ID token it was issued to)
    fp      an HMAC of what that login rests on (the user's htpasswd entry, the static token,
            the client CA bundle, the OIDC issuer settings): a changed password, a removed user
            or token voids the token at the next reload
    grp     (x509 and oidc only) the groups the certificate or ID token gave

Only HS256 is accepted, by a joserfc registry that knows no other algorithm, with an HMAC key
of its own (so `alg: none`, RS256, HS384, and HS256 keyed with any public key all fail), and the
header must be exactly the one above (no `kid`, `jku`, `jwk`, `crit`). The user's groups,
uid and extras are read from the current files at each use (authn/login.py), never from
the token, except `grp` where the files have none.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import math
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import OctKey
from joserfc.jws import JWSRegistry

from kube_front_proxy.authn.revocation import Revocations
from kube_front_proxy.authn.revocation_list import TOKEN_ID, RevocationList
from kube_front_proxy.authn.session_token_config import SessionTokenSettings
from kube_front_proxy.identity.headers import Identity

logger = logging.getLogger("kube_front_proxy")

ISSUER = "kube-front-proxy"
ALGORITHM = "HS256"
_HEADER = {"alg": ALGORITHM, "typ": "JWT"}
# openssl rand -base64 32: the key of an HMAC-SHA256 needs no more, and must have no less.
MIN_KEY_BYTES = 32
# A token of a user name of a few hundred characters and a few groups is under 1 KB.
MAX_TOKEN_CHARS = 8192
# Tokens whose signature is remembered as checked, the least recently used dropped first.
MAX_VERIFIED = 10_000
# Replicas' clocks may disagree: a token issued by one a little ahead is not "from the future".
CLOCK_SKEW_SECONDS = 60
# The logins a token can be issued to; a session token itself is not one (no renewal chain).
SOURCES = frozenset({"htpasswd", "token", "x509", "oidc"})

# Why a token did not log anyone in: fixed phrases (they label a metric).
INVALID = "invalid session token"
EXPIRED = "session token expired"
REVOKED = "session token revoked"
VOIDED = "session token voided (user, password or credential changed)"
REASONS = frozenset({INVALID, EXPIRED, REVOKED, VOIDED})


class SessionTokenRejected(Exception):
    """reason: one of REASONS; detail: for the log only, never the token."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Basis:
    """What a login rests on: a token issued to it lives only while this stays the same."""

    authenticator: str
    binding: bytes = field(repr=False)  # e.g. the htpasswd hash: HMAC'ed, never in a token
    not_after: float | None = None  # the credential's own end (certificate, ID token)
    groups: tuple[str, ...] | None = None  # carried in the token: the files have none


@dataclass(frozen=True)
class Issued:
    token: str = field(repr=False)
    token_id: str
    issued_at: float
    expires_at: float


@dataclass(frozen=True)
class Claims:
    """A checked token: signed by this proxy's key, not expired. Revocation and the
    fingerprint are checked by the caller, against the current files."""

    user: str
    source: str
    token_id: str
    issued_at: float
    expires_at: float
    fingerprint: str
    groups: tuple[str, ...] | None


def read_key(path: Path) -> bytes:
    """The shared secret in signing_key_file: base64 of at least 32 random bytes.

    Raises ValueError with a message that never quotes the file."""
    try:
        text = path.read_text(encoding="ascii")
    except OSError as e:
        raise ValueError(f"cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ValueError("not base64 text (openssl rand -base64 32)") from None
    try:
        key = base64.b64decode("".join(text.split()), validate=True)
    except binascii.Error:
        raise ValueError("not base64 text (openssl rand -base64 32)") from None
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(
            f"{len(key)} bytes; at least {MIN_KEY_BYTES} are needed (openssl rand -base64 32)"
        )
    return key


def new_token_id() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()


def _derive(key: bytes, purpose: str) -> bytes:
    # One secret, two uses: each gets its own key, so neither output helps against the other.
    return hmac.digest(key, f"kube-front-proxy session tokens: {purpose}".encode(), "sha256")


class SessionTokens:
    """Issues and checks the tokens of one signing key."""

    def __init__(self, settings: SessionTokenSettings, shared: Revocations | None = None) -> None:
        """Raises ConfigError naming the key file or the revocation file. shared: the revoked
        token ids every process sees (state.redis), besides the file's."""
        self.settings = settings
        self.ttl = settings.ttl_seconds
        try:
            key = read_key(settings.signing_key_file)
        except ValueError as e:
            raise settings.error("signing_key_file", f"{settings.signing_key_file}: {e}") from None
        self._signing_key = OctKey.import_key(_derive(key, "signing"))
        self._fingerprint_key = _derive(key, "fingerprint")
        # Exactly one algorithm: joserfc refuses any other a header names.
        self._registry = JWSRegistry(algorithms=[ALGORITHM])
        # SHA-256 of a token -> its claims, for tokens whose signature verified; a new key (a
        # reload builds a new SessionTokens) starts empty.
        self._verified: OrderedDict[bytes, Claims] = OrderedDict()
        self.revocation_list = RevocationList(settings.revocation_file)
        self.shared = shared

    def fingerprint(self, source: str, user: str, binding: bytes) -> str:
        message = json.dumps([source, user, binding.hex()]).encode()
        digest = hmac.digest(self._fingerprint_key, message, "sha256")[:16]
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def matches(self, claims: Claims, binding: bytes) -> bool:
        expected = self.fingerprint(claims.source, claims.user, binding)
        return hmac.compare_digest(expected.encode(), claims.fingerprint.encode())

    def issue(self, identity: Identity, basis: Basis, now: float | None = None) -> Issued:
        """A new token for a login of basis.authenticator (one of SOURCES)."""
        if basis.authenticator not in SOURCES:
            raise ValueError(f"no session token for a login by {basis.authenticator}")
        issued_at = math.floor(time.time() if now is None else now)
        expires_at = issued_at + self.ttl
        if basis.not_after is not None:
            expires_at = min(expires_at, math.floor(basis.not_after))
        token_id = new_token_id()
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": identity.user,
            "src": basis.authenticator,
            "jti": token_id,
            "iat": issued_at,
            "exp": expires_at,
            "fp": self.fingerprint(basis.authenticator, identity.user, basis.binding),
        }
        if basis.groups is not None:
            claims["grp"] = list(basis.groups)
        payload = json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode()
        token = jws.serialize_compact(_HEADER, payload, self._signing_key, registry=self._registry)
        return Issued(token, token_id, float(issued_at), float(expires_at))

    def verify(self, token: str, now: float | None = None) -> Claims:
        """The claims of a token this proxy signed and that has not expired; raises
        SessionTokenRejected otherwise."""
        if len(token) > MAX_TOKEN_CHARS:
            _invalid("too long")
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        claims = self._verified.get(digest)
        if claims is None:
            claims = self._signed_claims(token)
            # kubectl sends the same token with every request: its signature is checked once
            # (a third of the cost of a login with one). Only signed tokens get in.
            self._verified[digest] = claims
            if len(self._verified) > MAX_VERIFIED:
                self._verified.popitem(last=False)
        else:
            self._verified.move_to_end(digest)
        now = time.time() if now is None else now
        if claims.issued_at > now + CLOCK_SKEW_SECONDS:
            _invalid("issued in the future")
        # A lower ttl_seconds applies to tokens already issued.
        if now >= min(claims.expires_at, claims.issued_at + self.ttl):
            raise SessionTokenRejected(EXPIRED)
        return claims

    def _signed_claims(self, token: str) -> Claims:
        try:
            signed = jws.deserialize_compact(token, self._signing_key, registry=self._registry)
        except JoseError as e:
            # Another key, an altered token, another algorithm, or not a JWS at all (an ID
            # token of the OIDC issuer comes here first).
            _invalid(f"signature not verified ({e.error or type(e).__name__})")
        if signed.headers() != _HEADER:
            _invalid("unexpected header")
        try:
            payload = json.loads(signed.payload, parse_constant=_no_constants)
        except ValueError:
            _invalid("claims are not JSON")
        if not isinstance(payload, dict):
            _invalid("claims are not a JSON object")
        return _claims(payload)

    async def revoked(self, claims: Claims) -> bool:
        if self.revocation_list.revoked(claims.token_id, claims.user, claims.issued_at):
            return True
        # One round trip to Redis; while it cannot answer, state.redis.revoked_when_unavailable.
        return self.shared is not None and await self.shared.revoked(claims.token_id)

    async def share_revocations(self) -> None:
        """Put the file's token ids into the shared set, for at most a token's lifetime (then
        any token of that id has expired anyway)."""
        if self.shared is None or not self.revocation_list.token_ids:
            return
        ids = sorted(self.revocation_list.token_ids)
        shared = [await self.shared.revoke(token_id, self.ttl) for token_id in ids]
        if all(shared):
            logger.info("kube-front-proxy: %d revoked token ids shared through state.redis",
                        len(ids))  # fmt: skip
        else:
            logger.warning("kube-front-proxy: %d of %d revoked token ids not shared: Redis does "
                           "not answer (this process refuses them)", shared.count(False),
                           len(ids))  # fmt: skip


def _claims(payload: dict[str, Any]) -> Claims:
    if payload.get("iss") != ISSUER:
        _invalid("another issuer")
    user, source, token_id, fp = (payload.get(k) for k in ("sub", "src", "jti", "fp"))
    if not isinstance(user, str) or not user:
        _invalid("no user")
    if source not in SOURCES:
        _invalid("unknown source")
    if not isinstance(token_id, str) or not TOKEN_ID.fullmatch(token_id):
        _invalid("malformed token id")
    if not isinstance(fp, str):
        _invalid("no fingerprint")
    issued_at, expires_at = _number(payload, "iat"), _number(payload, "exp")
    groups = payload.get("grp")
    if groups is not None and not _strings(groups):
        _invalid("groups are not a list of strings")
    return Claims(
        user=user,
        source=str(source),
        token_id=token_id,
        issued_at=issued_at,
        expires_at=expires_at,
        fingerprint=fp,
        groups=tuple(groups) if groups is not None else None,
    )


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _number(payload: dict[str, Any], name: str) -> float:
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        _invalid(f"no {name}")
    return float(value)


def _invalid(detail: str) -> NoReturn:
    raise SessionTokenRejected(INVALID, detail)


def _no_constants(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")
