"""Logging a request in: Basic credentials checked against htpasswd, identity from users.yaml."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from .basic_auth import MalformedCredentials, parse_basic
from .credential_cache import CredentialCache
from .htpasswd import Htpasswd
from .identity import Identity, IdentityHeaderWriter
from .lockout import Lockout

HeaderLines = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True)
class Outcome:
    """The result of one login: the identity and its header lines, or why it failed."""

    identity: Identity | None
    lines: HeaderLines = ()
    reason: str = ""
    claimed_user: str | None = None
    retry_after: float = 0.0  # > 0: locked out (brute-force limits); answer 429


class BasicLogin:
    """HTTP Basic login; identity header lines are computed for every user at load time."""

    def __init__(
        self,
        htpasswd: Htpasswd,
        users: Mapping[str, Identity],
        writer: IdentityHeaderWriter,
        cache: CredentialCache,
        lockout: Lockout,
    ) -> None:
        self.htpasswd = htpasswd
        self.cache = cache
        self.lockout = lockout
        # A user that logs in but is not in users.yaml gets its name and no groups.
        self.identities = {u: users.get(u) or Identity(user=u) for u in htpasswd.users()}
        self._lines = {u: writer.lines_for(i) for u, i in self.identities.items()}

    async def authenticate(self, authorization: Sequence[str], client: str) -> Outcome:
        """Log in the Basic credentials of a request from the client address."""
        try:
            credentials = parse_basic(authorization)
        except MalformedCredentials as e:
            return self._refuse(str(e), None, client)
        if credentials is None:
            # Not an attempt at a password: no hash runs, nothing to count.
            return Outcome(None, reason="no credentials")
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
        return Outcome(self.identities[user], self._lines[user], claimed_user=user)

    def _refuse(self, reason: str, user: str | None, client: str) -> Outcome:
        self.lockout.failed(user, client)
        return Outcome(None, reason=reason, claimed_user=user)
