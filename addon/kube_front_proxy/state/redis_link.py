"""The connection to the Redis that replicas share state through (state.redis), and its health.

Every command runs under state.redis.timeout_seconds, connecting included, so a Redis that is
down, slow or black-holed costs a request at most that. The first failure makes the link
degraded: callers fall back to what this process keeps (they catch Unavailable), a WARNING is
logged, and the metrics and /readyz say so. While degraded nothing waits for Redis: a PING
once a second looks for it, and when it answers, the registered resynchronizations run (the
counter store pushes what it counted meanwhile) before the link is used again.

Redis is verified like every TLS connection here (rediss://: its certificate must chain to
state.redis.ca, or the system's trust, and name the host).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from kube_front_proxy.state.redis_config import RedisSettings

logger = logging.getLogger("kube_front_proxy")

T = TypeVar("T")
Client = aioredis.Redis
# Probes while degraded; connections per process (more wait for one, within the timeout).
PROBE_SECONDS = 1.0
MAX_CONNECTIONS = 32
_FAILURES = (RedisError, OSError, TimeoutError, ssl.SSLError)


class Unavailable(Exception):
    """Redis did not answer in time, or the link is degraded: use this process's own state."""


@dataclass
class Health:
    """What the metrics and /readyz report about the shared state."""

    where: str  # the URL (it holds no password)
    degraded_since: float | None = None  # wall clock
    reason: str = ""
    errors: int = 0  # failed commands and probes

    @property
    def degraded(self) -> bool:
        return self.degraded_since is not None


class RedisLink:
    def __init__(self, settings: RedisSettings, password: str | None, ca: str | None) -> None:
        """ca: the PEM text of state.redis.ca (rediss only; None: the system's trust)."""
        self.settings = settings
        self.timeout = settings.timeout
        self.health = Health(settings.url)
        options: dict[str, object] = {}
        if settings.tls:
            options = {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
            if ca:
                options["ssl_ca_data"] = ca
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.url,
            password=password,
            max_connections=MAX_CONNECTIONS,
            timeout=settings.timeout,
            socket_timeout=settings.timeout,
            socket_connect_timeout=settings.timeout,
            # One try: the timeout is the whole budget, and degraded mode is the fallback.
            retry=Retry(NoBackoff(), 0),
            client_name="kube-front-proxy",
            **options,
        )
        self.client = Client(connection_pool=pool)
        self._resyncs: list[Callable[[Client], Awaitable[None]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._probe: asyncio.Task[None] | None = None
        self.closed = False

    @property
    def up(self) -> bool:
        return not self.health.degraded

    def on_recovery(self, resync: Callable[[Client], Awaitable[None]]) -> None:
        """Run resync(client) when Redis answers again, before the link is used again; it may
        raise Unavailable (the link then stays degraded and tries again later)."""
        self._resyncs.append(resync)

    async def call(self, command: Callable[[Client], Awaitable[T]]) -> T:
        """command(client) within the timeout; Unavailable if degraded or if it fails."""
        if not self.up:
            raise Unavailable
        try:
            return await self.timed(command(self.client))
        except Unavailable as e:
            self._degrade(e.__cause__ or e)
            raise

    async def timed(self, command: Awaitable[T]) -> T:
        """One command within the timeout, degraded or not; Unavailable if it fails."""
        try:
            async with asyncio.timeout(self.timeout):
                return await command
        except _FAILURES as e:
            raise Unavailable(describe(e)) from e

    def spawn(self, command: Callable[[Client], Awaitable[object]]) -> None:
        """Run call(command) in the background: a refund, a clear. Skipped while degraded."""
        if not self.up or self.closed:
            return

        async def run() -> None:
            with contextlib.suppress(Unavailable):
                await self.call(command)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settled(self) -> None:
        """Wait for the background commands started so far (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _degrade(self, error: BaseException) -> None:
        self.health.errors += 1
        if self.health.degraded or self.closed:
            return
        self.health.degraded_since = time.time()
        self.health.reason = describe(error)
        logger.warning(
            "kube-front-proxy: Redis at %s: %s; login failures are counted in this process "
            "until it answers again",
            self.health.where,
            self.health.reason,
        )
        self._probe = asyncio.get_running_loop().create_task(self._wait_for_redis())

    async def _wait_for_redis(self) -> None:
        while not self.closed:
            await asyncio.sleep(PROBE_SECONDS)
            try:
                await self.timed(self.client.ping())
                for resync in self._resyncs:
                    await resync(self.client)
            except Unavailable as e:
                self.health.errors += 1
                self.health.reason = str(e)
                continue
            since = self.health.degraded_since or time.time()
            self.health.degraded_since = None
            self.health.reason = ""
            logger.warning(
                "kube-front-proxy: Redis at %s answers again after %.0f s; login failures "
                "are counted there again",
                self.health.where,
                time.time() - since,
            )
            return

    async def close(self) -> None:
        self.closed = True
        if self._probe:
            self._probe.cancel()
        await self.settled()
        await self.client.aclose()


def describe(error: BaseException) -> str:
    """A short reason for the log: the kind of failure and Redis's own words (never a
    password: the client never quotes the AUTH it sent)."""
    if isinstance(error, TimeoutError):
        return "no answer within the timeout"
    text = str(error).strip().splitlines()[0][:200].rstrip(".") if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
