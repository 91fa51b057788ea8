"""Revoked token ids: a set shared by every process through Redis (state.redis), or kept in
this process without it.

A revocation lives as long as the token it revokes could (its ttl), then expires by itself.
While Redis cannot answer, a check says what state.redis.revoked_when_unavailable says: by
default every token counts as revoked (fail closed: a revocation written elsewhere cannot be
seen, and a revoked token must not work), so logins with proxy tokens stop until Redis is back;
`false` lets them through unchecked instead. A revocation made in this process is always seen
here, Redis or not.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Protocol

from kube_front_proxy.state.redis_link import RedisLink, Unavailable


class Revocations(Protocol):
    async def revoked(self, token_id: str) -> bool: ...

    async def revoke(self, token_id: str, ttl: float) -> bool:
        """Revoke for ttl seconds; True once every process will see it."""
        ...


class MemoryRevocations:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until: dict[str, float] = {}

    async def revoked(self, token_id: str) -> bool:
        until = self._until.get(token_id)
        if until is None:
            return False
        if until > self._clock():
            return True
        del self._until[token_id]
        return False

    async def revoke(self, token_id: str, ttl: float) -> bool:
        now = self._clock()
        self._until = {t: u for t, u in self._until.items() if u > now}  # expired ones go
        self._until[token_id] = max(self._until.get(token_id, 0.0), now + ttl)
        return True


class RedisRevocations:
    """Keys `<prefix>:revoked:<sha256 of the id>`, expiring with the revocation."""

    def __init__(self, link: RedisLink, local: MemoryRevocations) -> None:
        self.link = link
        self.local = local
        self.prefix = f"{link.settings.key_prefix}:revoked:"
        self.when_unavailable = link.settings.revoked_when_unavailable

    def redis_key(self, token_id: str) -> str:
        return self.prefix + hashlib.sha256(token_id.encode("utf-8", "surrogatepass")).hexdigest()

    async def revoked(self, token_id: str) -> bool:
        if await self.local.revoked(token_id):
            return True
        key = self.redis_key(token_id)
        try:
            return bool(await self.link.call(lambda r: r.exists(key)))
        except Unavailable:
            return self.when_unavailable

    async def revoke(self, token_id: str, ttl: float) -> bool:
        await self.local.revoke(token_id, ttl)
        key, ms = self.redis_key(token_id), max(1, int(ttl * 1000))
        try:
            await self.link.call(lambda r: r.set(key, b"1", px=ms))
        except Unavailable:
            return False
        return True
