"""Logging a request in: Basic credentials checked against htpasswd, or a static bearer token;
the identity comes from users.yaml (and the token file), with header lines computed at load."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from .basic_auth import BearerToken, MalformedCredentials, parse_authorization
from .credential_cache import CredentialCache
from .htpasswd import Htpasswd
from .identity import Identity, IdentityHeaderWriter
from .lockout import Lockout
from .tokens import TokenFile, token_digest

HeaderLines = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True)
class Outcome:
    """The result of one login: the identity and its header lines, or why it failed."""

    identity: Identity | None
    lines: HeaderLines = ()
    reason: str = ""
    claimed_user: str | None = None
    retry_after: float = 0.0  # > 0: locked out (brute-force limits); answer 429
    authenticator: str = ""  # "htpasswd" or "token" once logged in


def with_users_yaml(identity: Identity, users: Mapping[str, Identity]) -> Identity:
    """users.yaml adds groups, extras (and a uid, if none) to a user from any authenticator."""
    listed = users.get(identity.user)
    if listed is None:
        return identity
    groups = tuple(dict.fromkeys(identity.groups + listed.groups))
    extra = {**identity.extra, **listed.extra}
    return Identity(identity.user, groups, identity.uid or listed.uid, extra)


class Login:
    """Basic logins against htpasswd and static bearer tokens, whichever the request carries."""

    def __init__(
        self,
        htpasswd: Htpasswd | None,
        tokens: TokenFile | None,
        users: Mapping[str, Identity],
        writer: IdentityHeaderWriter,
        cache: CredentialCache,
        lockout: Lockout,
    ) -> None:
        self.htpasswd = htpasswd
        self.cache = cache
        self.lockout = lockout
        # A user that logs in but is not in users.yaml gets its name and no groups.
        names = htpasswd.users() if htpasswd else []
        self.identities = {u: with_users_yaml(Identity(user=u), users) for u in names}
        self._lines = {u: writer.lines_for(i) for u, i in self.identities.items()}
        self._tokens: dict[bytes, tuple[Identity, HeaderLines]] = {}
        for digest, identity in (tokens.identities() if tokens else {}).items():
            full = with_users_yaml(identity, users)
            self._tokens[digest] = (full, writer.lines_for(full))

    async def authenticate(self, authorization: Sequence[str], client: str) -> Outcome:
        """Log in the credentials of a request from the client address."""
        try:
            credentials = parse_authorization(authorization)
        except MalformedCredentials as e:
            return self._refuse(str(e), None, client)
        if credentials is None:
            # Not an attempt at a password: no hash runs, nothing to count.
            return Outcome(None, reason="no credentials")
        if isinstance(credentials, BearerToken):
            return self._token(credentials, client)
        if self.htpasswd is None:
            return self._refuse("Basic login is not configured", None, client)
        user, password = credentials.username, credentials.password
        wait = self.lockout.retry_after(user, client)
        if wait > 0:
            # Refused before any hash runs: a locked-out attack costs a dictionary lookup.
            return Outcome(None, reason="locked out", claimed_user=user, retry_after=wait)
        hashed = self.htpasswd.hash_of(user)
        verify = partial(self.htpasswd.verify, user, password)
        if not await self.cache.check(user, password, hashed, verify):
            reason = "unknown user" if hashed is None else "wrong password"
            return self._refuse(reason, user, client)
        self.lockout.succeeded(user, client)
        return Outcome(self.identities[user], self._lines[user], user, authenticator="htpasswd")

    def _token(self, credentials: BearerToken, client: str) -> Outcome:
        # Only the address can be locked: a wrong token names no user.
        wait = self.lockout.retry_after(None, client)
        if wait > 0:
            return Outcome(None, reason="locked out", retry_after=wait)
        found = self._tokens.get(token_digest(credentials.token))
        if found is None:
            return self._refuse("unknown token", None, client)
        identity, lines = found
        self.lockout.succeeded(identity.user, client)
        return Outcome(identity, lines, identity.user, authenticator="token")

    def _refuse(self, reason: str, user: str | None, client: str) -> Outcome:
        self.lockout.failed(user, client)
        return Outcome(None, reason=reason, claimed_user=user)
