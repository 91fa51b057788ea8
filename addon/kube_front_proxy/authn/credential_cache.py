"""Remembering successful password checks, so that bcrypt runs once per login, not per request.

kubectl sends the password with every request, and a bcrypt check costs ~0.3 s of CPU. A
success is remembered under an HMAC of (user, password) with a per-process random key (never
the password), together with the htpasswd hash it was checked against: when that entry
changes or disappears, the memory is void. Failures are never remembered.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable


class CredentialCache:
    """Bounded, TTL-limited memory of successful checks; one check per credential at a time."""

    def __init__(
        self, ttl: float, max_entries: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._key = secrets.token_bytes(32)
        # digest -> (htpasswd hash it was checked against, expiry); oldest use first.
        self._entries: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        self._pending: dict[bytes, asyncio.Future[bool]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def _digest(self, user: str, password: str) -> bytes:
        raw_user = user.encode("utf-8")
        # Length-prefixed, so that no (user, password) pair can collide with another.
        message = len(raw_user).to_bytes(4, "big") + raw_user + password.encode("utf-8")
        return hmac.digest(self._key, message, hashlib.sha256)

    def _hit(self, digest: bytes, hashed: str | None) -> bool:
        entry = self._entries.get(digest)
        if entry is None:
            return False
        remembered, expires = entry
        if remembered != hashed or expires <= self._clock():
            del self._entries[digest]
            return False
        self._entries.move_to_end(digest)
        return True

    def _remember(self, digest: bytes, hashed: str) -> None:
        self._entries[digest] = (hashed, self._clock() + self.ttl)
        self._entries.move_to_end(digest)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def remembers(self, user: str, password: str, hashed: str | None) -> bool:
        """Whether check would answer True from memory, without running anything."""
        entry = self._entries.get(self._digest(user, password))
        return entry is not None and entry[0] == hashed and entry[1] > self._clock()

    async def check(
        self, user: str, password: str, hashed: str | None, verify: Callable[[], bool]
    ) -> bool:
        """Whether the password is right: from memory, or by running verify on a thread.

        hashed is the user's current htpasswd entry (None if unknown). Concurrent checks of
        the same credentials share one verify call.
        """
        digest = self._digest(user, password)
        if self.ttl > 0 and self._hit(digest, hashed):
            return True
        pending = self._pending.get(digest)
        if pending is None:
            pending = asyncio.ensure_future(asyncio.to_thread(verify))
            self._pending[digest] = pending
            pending.add_done_callback(lambda _: self._pending.pop(digest, None))
        # shield: one cancelled request (client gone) must not cancel the others' check.
        ok = await asyncio.shield(pending)
        if ok and hashed is not None and self.ttl > 0:
            self._remember(digest, hashed)
        return ok
