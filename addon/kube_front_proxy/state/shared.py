"""What the processes of one fleet share through Redis (state.redis), built from the config.

One link (connection pool and health) per configuration; a reload that changes neither the
settings nor the files they name (password, CA) keeps it, and with it the counters this
process knows. The key user names are hashed with in counter keys must be the same in every
process: it is derived from the Redis password (so a reader of the Redis data without the
password cannot test names against the keys) and the key prefix; changing either starts the
counts afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ssl
from dataclasses import dataclass, field

from kube_front_proxy.authn.counter_store import MemoryCounterStore
from kube_front_proxy.authn.redis_counters import RedisCounterStore
from kube_front_proxy.authn.revocation import MemoryRevocations, RedisRevocations
from kube_front_proxy.state.redis_config import RedisSettings
from kube_front_proxy.state.redis_link import RedisLink


@dataclass(frozen=True)
class SharedState:
    link: RedisLink
    revocations: RedisRevocations
    secret: bytes  # the key user names are hashed with in shared counter keys
    identity: tuple[object, ...] = field(repr=False)  # what a reload compares

    def counter_store(self, local: MemoryCounterStore) -> RedisCounterStore:
        return RedisCounterStore(self.link, local)


def shared_state(
    settings: RedisSettings | None, previous: SharedState | None
) -> SharedState | None:
    """The shared state for settings (None: everything stays in this process); raises
    ConfigError naming the key of a file that cannot be read."""
    if settings is None:
        return None
    password = _password(settings)
    ca = _ca(settings) if settings.ca else ""
    identity = (settings, hashlib.sha256((password or "").encode()).digest(), ca)
    if previous is not None and previous.identity == identity:
        return previous
    link = RedisLink(settings, password, ca or None)
    message = b"kube-front-proxy lockout user names\0" + settings.key_prefix.encode()
    secret = hmac.digest((password or "").encode(), message, hashlib.sha256)
    return SharedState(link, RedisRevocations(link, MemoryRevocations()), secret, identity)


def retire(old: SharedState | None, new: SharedState | None) -> None:
    """Close the old link once a reload replaced it."""
    if old is not None and old is not new:
        with contextlib.suppress(RuntimeError):  # no event loop: nothing is open yet
            task = asyncio.get_running_loop().create_task(old.link.close())
            _closing.add(task)
            task.add_done_callback(_closing.discard)


_closing: set[asyncio.Task[None]] = set()


def _read(settings: RedisSettings, key: str) -> bytes:
    path = settings.ca if key == "ca" else settings.password_file
    assert path is not None
    try:
        return path.read_bytes()
    except OSError as e:
        raise settings.error(key, f"{path}: cannot read: {e.strerror or e}") from None


def _ca(settings: RedisSettings) -> str:
    try:
        text = _read(settings, "ca").decode("ascii")
        ssl.create_default_context(cadata=text)
    except (UnicodeDecodeError, ssl.SSLError, ValueError):
        raise settings.error("ca", f"{settings.ca}: not a PEM certificate bundle") from None
    return text


def _password(settings: RedisSettings) -> str | None:
    if settings.password_file is None:
        return None
    try:
        password = _read(settings, "password_file").decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise settings.error("password_file", "not UTF-8 text") from None
    if not password or any(c in password for c in "\r\n\0"):
        raise settings.error("password_file", "must hold the password on one line")
    return password
