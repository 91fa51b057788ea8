"""Logging a request in: client certificates, static bearer tokens, OIDC ID tokens and Basic
credentials checked against htpasswd, tried in the configured order like kube-apiserver's union
of authenticators. Every authenticator yields the same Identity; users.yaml adds to it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial

from cryptography import x509
from cryptography.hazmat.primitives.hashes import SHA256

from kube_front_proxy.authn.client_certs import CertificateRejected, ClientCertAuthenticator
from kube_front_proxy.authn.credential_cache import CredentialCache
from kube_front_proxy.authn.credentials import (
    BearerToken,
    Credentials,
    MalformedCredentials,
    WebSocketProtocols,
    parse_credentials,
)
from kube_front_proxy.authn.htpasswd import Htpasswd
from kube_front_proxy.authn.lockout import Lockout
from kube_front_proxy.authn.oidc import OidcAuthenticator, TokenRejected, expiry, looks_like_jwt
from kube_front_proxy.authn.session_tokens import (
    EXPIRED,
    REVOKED,
    VOIDED,
    Basis,
    Claims,
    SessionTokenRejected,
    SessionTokens,
)
from kube_front_proxy.authn.session_tokens import REASONS as SESSION_TOKEN_REASONS
from kube_front_proxy.authn.static_tokens import TokenFile, token_digest
from kube_front_proxy.authn.users import header_value_problem
from kube_front_proxy.config.schema import AUTHENTICATORS, SESSION_TOKEN
from kube_front_proxy.identity.headers import Identity, IdentityHeaderWriter

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
    basis: Basis | None = None  # what a session token issued to this login would rest on
    session: Claims | None = None  # the session token this login was made with
    guess: bool = True  # a refusal the lock-out counts (Rejected.guess)


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
}) | SESSION_TOKEN_REASONS  # fmt: skip


class Rejected(Exception):
    """Why credentials of an authenticator's kind did not log anyone in.

    The reason is a fixed phrase (it labels a metric); the detail, for the log only, may say more.
    A refusal that is no guess (a token this proxy signed, expired or revoked since) is not
    counted by the lock-out.
    """

    def __init__(self, reason: str, detail: str = "", guess: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
        self.guess = guess


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


@dataclass(frozen=True)
class Attempt:
    """One authenticator's login: the identity and its header lines, and how a session token
    issued to it, or the session token it was made with, is tied to the files."""

    identity: Identity
    lines: HeaderLines
    basis: Basis | None = None
    session: Claims | None = None


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
        session_tokens: SessionTokens | None = None,
    ) -> None:
        self.htpasswd = htpasswd
        self.client_certs = client_certs
        self.session_tokens = session_tokens
        self.cache = cache
        self.lockout = lockout
        self._users = users
        self._writer = writer
        # Users of the files get their header lines computed here, once.
        names = htpasswd.users() if htpasswd else []
        self.identities = {u: with_users_yaml(Identity(user=u), users) for u in names}
        self._lines = {u: writer.lines_for(i) for u, i in self.identities.items()}
        self._tokens: dict[bytes, Attempt] = {}
        self._tokens_of: dict[str, list[bytes]] = {}
        for digest, identity in (tokens.identities() if tokens else {}).items():
            full = with_users_yaml(identity, users)
            basis = Basis("token", digest)
            self._tokens[digest] = Attempt(full, writer.lines_for(full), basis)
            self._tokens_of.setdefault(identity.user, []).append(digest)
        self.oidc = oidc
        # Session tokens of certificates and ID tokens rest on who vouches for those: the
        # user CAs, the issuer and how its claims map to users.
        roots = client_certs.roots if client_certs else ()
        self._ca_binding = _digest(*(ca.fingerprint(SHA256()) for ca in roots)) if roots else b""
        self._oidc_binding = _digest(repr(_oidc_mapping(oidc)).encode()) if oidc else b""
        available: dict[str, Step] = {}
        if client_certs:
            available["x509"] = self._certificate
        if tokens:
            available["token"] = self._token
        if session_tokens:
            available[SESSION_TOKEN] = self._session_token
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
        read (authn/peer_certificates.py), and a WebSocket's bearer subprotocol."""
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
        if outcome.identity is None and outcome.guess:
            await self.lockout.failed(attempt)
        elif outcome.identity is None:
            self.lockout.abandon(attempt)
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
                return Outcome(
                    attempt.identity,
                    attempt.lines,
                    claimed_user=attempt.identity.user,
                    authenticator=name,
                    basis=attempt.basis,
                    session=attempt.session,
                )
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
        guess = all(e.guess for _, e in rejections)
        return Outcome(None, reason=reason, claimed_user=claimed, detail=detail, guess=guess)

    def _dynamic(self, identity: Identity, basis: Basis | None = None) -> Attempt:
        full = with_users_yaml(checked(identity), self._users)
        return Attempt(full, self._writer.lines_for(full), basis)

    async def _certificate(
        self, _credentials: object, certificates: Sequence[x509.Certificate]
    ) -> Attempt | None:
        if not certificates or self.client_certs is None:
            return None
        try:
            identity = self.client_certs.authenticate(certificates)
        except CertificateRejected as e:
            raise Rejected("certificate not accepted", str(e)) from None
        not_after = min(c.not_valid_after_utc for c in certificates).timestamp()
        return self._dynamic(identity, Basis("x509", self._ca_binding, not_after, identity.groups))

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
        basis = Basis("oidc", self._oidc_binding, expiry(credentials.token), identity.groups)
        return self._dynamic(identity, basis)

    async def _basic(self, credentials: object, _certificates: object) -> Attempt | None:
        if not isinstance(credentials, Credentials) or self.htpasswd is None:
            return None
        user, password = credentials.username, credentials.password
        hashed = self.htpasswd.hash_of(user)
        verify = partial(self.htpasswd.verify, user, password)
        if not await self.cache.check(user, password, hashed, verify):
            raise Rejected("unknown user" if hashed is None else "wrong password")
        assert hashed is not None
        return Attempt(self.identities[user], self._lines[user], Basis("htpasswd", hashed.encode()))

    async def _session_token(self, credentials: object, _certificates: object) -> Attempt | None:
        if not isinstance(credentials, BearerToken) or self.session_tokens is None:
            return None
        try:
            claims = self.session_tokens.verify(credentials.token)
        except SessionTokenRejected as e:
            # Only this proxy's key signs a token that expires: that is no guess.
            raise Rejected(e.reason, e.detail, guess=e.reason != EXPIRED) from None
        which = f"token {claims.token_id} of {claims.user!r}"
        attempt = self._still_valid(self.session_tokens, claims)
        if attempt is None:
            raise Rejected(VOIDED, which, guess=False)
        if await self.session_tokens.revoked(claims):
            raise Rejected(REVOKED, which, guess=False)
        return replace(attempt, basis=None, session=claims)

    def _still_valid(self, tokens: SessionTokens, claims: Claims) -> Attempt | None:
        """The login the token stands for, from the current files; None if what it was issued
        to has changed or gone (the user's password, the static token, the CAs, the issuer)."""
        for binding, attempt in self._bindings(claims):
            if tokens.matches(claims, binding):
                return attempt or self._dynamic(Identity(claims.user, claims.groups or ()))
        return None

    def _bindings(self, claims: Claims) -> Iterator[tuple[bytes, Attempt | None]]:
        user, source = claims.user, claims.source
        if source == "htpasswd" and self.htpasswd and self.htpasswd.hash_of(user) is not None:
            hashed = self.htpasswd.hash_of(user)
            assert hashed is not None
            yield hashed.encode(), Attempt(self.identities[user], self._lines[user])
        elif source == "token":
            for digest in self._tokens_of.get(user, ()):
                yield digest, self._tokens[digest]
        elif source == "x509" and self.client_certs:
            yield self._ca_binding, None
        elif source == "oidc" and self.oidc:
            yield self._oidc_binding, None


def _digest(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts)).digest()


def _oidc_mapping(oidc: OidcAuthenticator) -> tuple[object, ...]:
    s = oidc.settings
    return (s.issuer_url, s.audiences, s.username_claim, s.username_prefix, s.groups_claim,
            s.groups_prefix, sorted(s.required_claims.items()))  # fmt: skip
