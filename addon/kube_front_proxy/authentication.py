"""Logging a request in: client certificates, static bearer tokens, OIDC ID tokens and Basic
credentials checked against htpasswd, tried in the configured order like kube-apiserver's union
of authenticators. Every authenticator yields the same Identity; users.yaml adds to it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from cryptography import x509

from .basic_auth import (
    BearerToken,
    Credentials,
    MalformedCredentials,
    WebSocketProtocols,
    parse_credentials,
)
from .client_certs import CertificateRejected, ClientCertAuthenticator
from .config import AUTHENTICATORS
from .credential_cache import CredentialCache
from .htpasswd import Htpasswd
from .identity import Identity, IdentityHeaderWriter
from .lockout import Lockout
from .oidc import OidcAuthenticator, TokenRejected, looks_like_jwt
from .tokens import TokenFile, token_digest
from .users import header_value_problem

HeaderLines = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True)
class Outcome:
    """The result of one login: the identity and its header lines, or why it failed."""

    identity: Identity | None
    lines: HeaderLines = ()
    reason: str = ""
    claimed_user: str | None = None
    retry_after: float = 0.0  # > 0: locked out (brute-force limits); answer 429
    authenticator: str = ""  # one of AUTHENTICATORS once logged in
    detail: str = ""  # more than the reason, for the proxy's log only


# Every reason a refusal gives, alone or as "authenticator: reason; ..." when several refused.
# They label the login-failure metric (metric_labels.reason): a reason missing here is counted
# as "other".
REASONS = frozenset({
    "no credentials", "locked out",
    # basic_auth.MalformedCredentials
    "malformed Bearer token", "more than one Authorization header",
    "unsupported authorization scheme", "Basic credentials are not valid base64 of UTF-8",
    "Basic credentials have no ':' separator",
    "more than one WebSocket bearer token", "WebSocket bearer token is not base64url",
    "WebSocket bearer token is not base64url of UTF-8",
    "WebSocket bearer token without another subprotocol",
    "both an Authorization header and a WebSocket bearer token",
    "Basic credentials are not accepted here", "Bearer credentials are not accepted here",
    # checked(): users.header_value_problem
    "identity contains a control character (CR, LF, NUL, ...)",
    "identity has leading or trailing whitespace", "empty user name",
    "certificate not accepted", "unknown token", "not an ID token", "invalid ID token",
    "unknown user", "wrong password",
})  # fmt: skip


class Rejected(Exception):
    """Why credentials of an authenticator's kind did not log anyone in.

    The reason is a fixed phrase (it labels a metric); the detail, for the log only, may say more.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def with_users_yaml(identity: Identity, users: Mapping[str, Identity]) -> Identity:
    """users.yaml adds groups, extras (and a uid, if none) to a user from any authenticator."""
    listed = users.get(identity.user)
    if listed is None:
        return identity
    groups = tuple(dict.fromkeys(identity.groups + listed.groups))
    extra = {**identity.extra, **listed.extra}
    return Identity(identity.user, groups, identity.uid or listed.uid, extra)


def checked(identity: Identity) -> Identity:
    """An identity from a certificate or a token, made safe to send in headers.

    Files are checked when they load; these values come with the request, so they are checked
    here: a control character could inject a header. Empty groups are dropped, as the API
    server's requestheader authenticator drops empty values.
    """
    values = [identity.user, identity.uid, *identity.groups]
    values += [v for key, vs in identity.extra.items() for v in (key, *vs)]
    for value in values:
        problem = header_value_problem(value)
        if problem:
            raise Rejected(f"identity {problem}")
    if not identity.user:
        raise Rejected("empty user name")
    return Identity(identity.user, tuple(g for g in identity.groups if g), identity.uid,
                    identity.extra)  # fmt: skip


Attempt = tuple[Identity, HeaderLines]
Step = Callable[[Credentials | BearerToken | None, Sequence[x509.Certificate]],
                Awaitable[Attempt | None]]  # fmt: skip


class Login:
    """Tries each configured authenticator in order; the first that logs the request in wins."""

    def __init__(
        self,
        *,
        users: Mapping[str, Identity],
        writer: IdentityHeaderWriter,
        cache: CredentialCache,
        lockout: Lockout,
        order: Sequence[str] = AUTHENTICATORS,
        htpasswd: Htpasswd | None = None,
        tokens: TokenFile | None = None,
        client_certs: ClientCertAuthenticator | None = None,
        oidc: OidcAuthenticator | None = None,
    ) -> None:
        self.htpasswd = htpasswd
        self.client_certs = client_certs
        self.cache = cache
        self.lockout = lockout
        self._users = users
        self._writer = writer
        # Users of the files get their header lines computed here, once.
        names = htpasswd.users() if htpasswd else []
        self.identities = {u: with_users_yaml(Identity(user=u), users) for u in names}
        self._lines = {u: writer.lines_for(i) for u, i in self.identities.items()}
        self._tokens: dict[bytes, Attempt] = {}
        for digest, identity in (tokens.identities() if tokens else {}).items():
            full = with_users_yaml(identity, users)
            self._tokens[digest] = (full, writer.lines_for(full))
        self.oidc = oidc
        available: dict[str, Step] = {}
        if client_certs:
            available["x509"] = self._certificate
        if tokens:
            available["token"] = self._token
        if oidc:
            available["oidc"] = self._oidc_token
        if htpasswd:
            available["htpasswd"] = self._basic
        self._steps = [(name, available[name]) for name in order if name in available]

    async def authenticate(
        self,
        authorization: Sequence[str],
        client: str,
        certificates: Sequence[x509.Certificate] = (),
        unreadable_chain: str = "",
        websocket: WebSocketProtocols | None = None,
    ) -> Outcome:
        """Log in a request from the client address: its Authorization values, the
        certificate chain its TLS connection proved (leaf first) or why that chain cannot be
        read (peer_certificates.py), and a WebSocket's bearer subprotocol."""
        if unreadable_chain:
            # kube-apiserver (Go's TLS) refuses such a handshake: nothing on it is trusted.
            return Outcome(None, reason="certificate not accepted", detail=unreadable_chain)
        malformed = None
        try:
            credentials = parse_credentials(authorization, websocket)
        except MalformedCredentials as e:
            credentials, malformed = None, e
        if credentials is None and malformed is None:
            # Only a certificate, if any: nothing a guesser could try again.
            return await self._log_in(None, certificates)
        claimed = credentials.username if isinstance(credentials, Credentials) else None
        # The guess: equal credentials in flight are one (the cache checks them once).
        guess = hash(credentials) if malformed is None else hash(tuple(authorization))
        remembered = malformed is None and self._remembered(credentials)
        attempt = await self.lockout.attempt(claimed, client, guess, remembered)
        if attempt.retry_after > 0:
            # Refused before any hash runs: a locked-out attack costs a dictionary lookup.
            return Outcome(
                None, reason="locked out", claimed_user=claimed, retry_after=attempt.retry_after
            )
        try:
            if malformed is not None:
                outcome = Outcome(None, reason=str(malformed), detail=malformed.detail)
            else:
                outcome = await self._log_in(credentials, certificates)
        except BaseException:
            self.lockout.abandon(attempt)
            raise
        if outcome.identity is None:
            await self.lockout.failed(attempt)
        else:
            await self.lockout.succeeded(attempt, outcome.identity.user)
        return outcome

    def _remembered(self, credentials: Credentials | BearerToken | None) -> bool:
        """Credentials known to log in without an expensive check: a password the cache
        remembers, a token of the token file (the lock-out decides them without a round trip
        to a shared store)."""
        if isinstance(credentials, Credentials):
            user, password = credentials.username, credentials.password
            htpasswd = self.htpasswd
            return htpasswd is not None and self.cache.remembers(
                user, password, htpasswd.hash_of(user)
            )
        if isinstance(credentials, BearerToken):
            return token_digest(credentials.token) in self._tokens
        return False

    async def _log_in(
        self,
        credentials: Credentials | BearerToken | None,
        certificates: Sequence[x509.Certificate],
    ) -> Outcome:
        claimed = credentials.username if isinstance(credentials, Credentials) else None
        rejections: list[tuple[str, Rejected]] = []
        for name, step in self._steps:
            try:
                attempt = await step(credentials, certificates)
            except Rejected as e:
                rejections.append((name, e))
                continue
            if attempt is not None:
                identity, lines = attempt
                return Outcome(identity, lines, claimed_user=identity.user, authenticator=name)
        if not rejections:
            if credentials is None:
                return Outcome(None, reason="no credentials")
            kind = "Basic" if claimed is not None else "Bearer"
            rejections.append(("", Rejected(f"{kind} credentials are not accepted here")))
        if len(rejections) == 1:
            reason = rejections[0][1].reason
        else:
            reason = "; ".join(f"{name}: {e.reason}" for name, e in rejections)
        detail = "; ".join(e.detail for _, e in rejections if e.detail)
        return Outcome(None, reason=reason, claimed_user=claimed, detail=detail)

    def _dynamic(self, identity: Identity) -> Attempt:
        full = with_users_yaml(checked(identity), self._users)
        return full, self._writer.lines_for(full)

    async def _certificate(
        self, _credentials: object, certificates: Sequence[x509.Certificate]
    ) -> Attempt | None:
        if not certificates or self.client_certs is None:
            return None
        try:
            return self._dynamic(self.client_certs.authenticate(certificates))
        except CertificateRejected as e:
            raise Rejected("certificate not accepted", str(e)) from None

    async def _token(self, credentials: object, _certificates: object) -> Attempt | None:
        if not isinstance(credentials, BearerToken):
            return None
        found = self._tokens.get(token_digest(credentials.token))
        if found is None:
            raise Rejected("unknown token")
        return found

    async def _oidc_token(self, credentials: object, _certificates: object) -> Attempt | None:
        if not isinstance(credentials, BearerToken) or self.oidc is None:
            return None
        if not looks_like_jwt(credentials.token):
            raise Rejected("not an ID token")
        try:
            identity = await self.oidc.authenticate(credentials.token)
        except TokenRejected as e:
            # Some reasons quote the token ("signing algorithm X"): the metric gets a fixed one.
            raise Rejected("invalid ID token", e.reason) from None
        return self._dynamic(identity)

    async def _basic(self, credentials: object, _certificates: object) -> Attempt | None:
        if not isinstance(credentials, Credentials) or self.htpasswd is None:
            return None
        user, password = credentials.username, credentials.password
        hashed = self.htpasswd.hash_of(user)
        verify = partial(self.htpasswd.verify, user, password)
        if not await self.cache.check(user, password, hashed, verify):
            raise Rejected("unknown user" if hashed is None else "wrong password")
        return self.identities[user], self._lines[user]
