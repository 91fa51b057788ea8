"""The `state.redis` section of config.yaml: where replicas share their counters.

    state:
      redis:
        url: redis://127.0.0.1:6379/0     # rediss://... for TLS, unix:///path/redis.sock
        ca: redis-ca.crt                  # rediss only; verified, like every TLS connection here
        password_file: redis-password     # optional (AUTH); username in the URL for ACL users
        key_prefix: kube-front-proxy      # every key starts with it
        timeout_seconds: 0.2              # per command

The password lives in its own file, never in the URL: config.yaml is a ConfigMap, and a URL
ends up in log lines. This module imports nothing from config/settings.py, so that
config/settings.py can.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from kube_front_proxy.config.errors import ConfigError
from kube_front_proxy.config.yamlfile import Section

SCHEMES = ("redis", "rediss", "unix")
DEFAULT_PREFIX = "kube-front-proxy"
DEFAULT_TIMEOUT = 0.2


@dataclass(frozen=True)
class RedisSettings:
    file: Path  # the config file, for errors about the files named below
    url: str  # as written: it holds no password
    ca: Path | None
    password_file: Path | None
    key_prefix: str
    timeout: float
    # Whether a token counts as revoked while Redis cannot say (fail closed).
    revoked_when_unavailable: bool

    @property
    def tls(self) -> bool:
        return self.url.startswith("rediss:")

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.file, f"state.redis.{key}", message)


def redis_settings(section: Section) -> RedisSettings:
    """Parse state.redis; raises ConfigError naming the file and the dotted key."""
    url = section.string("url")
    _check_url(section, url)
    tls = url.startswith("rediss:")
    ca = section.optional_path("ca")
    if ca and not tls:
        raise section.error("ca", "only for rediss:// URLs (TLS)")
    password_file = section.optional_path("password_file")
    prefix = section.string("key_prefix", DEFAULT_PREFIX)
    if not prefix or not prefix.isprintable() or any(c.isspace() for c in prefix):
        raise section.error("key_prefix", "must be printable text without spaces")
    timeout = section.number("timeout_seconds", DEFAULT_TIMEOUT)
    if not math.isfinite(timeout) or not 0 < timeout <= 10:
        raise section.error("timeout_seconds", "must be more than 0 and at most 10")
    revoked_when_unavailable = section.boolean("revoked_when_unavailable", True)
    section.finish()
    return RedisSettings(
        section.file, url, ca, password_file, prefix, timeout, revoked_when_unavailable
    )


def _check_url(section: Section, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise section.error("url", f"must start with redis://, rediss:// or unix://, not {url!r}")
    if parts.password is not None:
        # Never echo the URL here: it holds a password.
        raise section.error("url", "holds a password: put it in password_file instead")
    if parts.fragment:
        raise section.error("url", f"must not have a fragment: {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise section.error("url", f"invalid port in {url!r}") from None
    if parts.scheme == "unix":
        if parts.netloc.rpartition("@")[2] or not parts.path.startswith("/"):
            raise section.error("url", f"must be unix:///absolute/path.sock, not {url!r}")
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        if set(query) - {"db"} or not query.get("db", "0").isdigit():
            raise section.error("url", f"only ?db=N may follow the socket path: {url!r}")
        return
    if not parts.hostname or port == 0:
        raise section.error("url", f"must name a host: {url!r}")
    if parts.query or (parts.path.strip("/") and not parts.path.strip("/").isdigit()):
        raise section.error("url", f"only a database number may follow the host: {url!r}")
