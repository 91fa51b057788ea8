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

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qsl, urlsplit

from pydantic import AfterValidator, model_validator

from kube_front_proxy.config.declare import NONE, FileName, KeyProblem, Section, key, resolve
from kube_front_proxy.config.errors import ConfigError

SCHEMES = ("redis", "rediss", "unix")


def _url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is not None:
        # Checked first, and the URL never echoed: it holds a password.
        raise ValueError("holds a password: put it in password_file instead")
    if parts.scheme not in SCHEMES:
        raise ValueError(f"must start with redis://, rediss:// or unix://, not {url!r}")
    if parts.fragment:
        raise ValueError(f"must not have a fragment: {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"invalid port in {url!r}") from None
    if parts.scheme == "unix":
        if parts.netloc.rpartition("@")[2] or not parts.path.startswith("/"):
            raise ValueError(f"must be unix:///absolute/path.sock, not {url!r}")
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        if set(query) - {"db"} or not query.get("db", "0").isdigit():
            raise ValueError(f"only ?db=N may follow the socket path: {url!r}")
        return url
    if not parts.hostname or port == 0:
        raise ValueError(f"must name a host: {url!r}")
    if parts.query or (parts.path.strip("/") and not parts.path.strip("/").isdigit()):
        raise ValueError(f"only a database number may follow the host: {url!r}")
    return url


def _key_prefix(prefix: str) -> str:
    if not prefix or not prefix.isprintable() or any(c.isspace() for c in prefix):
        raise ValueError("must be printable text without spaces")
    return prefix


class Redis(Section):
    """Where replicas share their counters and token revocations."""

    url: Annotated[str, AfterValidator(_url)] = key(
        doc="share the lock-out counters (and token revocations) with every process using this "
        "Redis and `key_prefix`: `redis://[user@]HOST[:PORT][/DB]`, `rediss://...` (TLS) or "
        "`unix:///PATH.sock[?db=N]`; never a password",
        shown="none (everything per process)",
    )
    ca: FileName | None = key(
        None, "CA bundle that verifies Redis's certificate (`rediss://` only; the host name is "
        "checked too)", shown="the system's trust",
    )  # fmt: skip
    password_file: FileName | None = key(
        None, "file holding the password (`AUTH`; with a user name in the URL for an ACL user); "
        "re-read on change", shown=NONE,
    )  # fmt: skip
    key_prefix: Annotated[str, AfterValidator(_key_prefix)] = key(
        "kube-front-proxy", "every key starts with it; processes with another prefix count apart"
    )
    timeout_seconds: float = key(
        0.2, "most a Redis command may take, connecting included; then the proxy counts in the "
        "process until Redis answers again (log line, `kube_front_proxy_shared_state_degraded`, "
        "`/readyz`)", gt=0, le=10,
    )  # fmt: skip
    revoked_when_unavailable: bool = key(
        True, "while Redis cannot answer, a token revocation check says \"revoked\" (fail "
        "closed); `false` lets tokens through unchecked",
    )  # fmt: skip

    @model_validator(mode="after")
    def _ca_for_tls_only(self) -> Redis:
        if self.ca and not self.url.startswith("rediss:"):
            raise KeyProblem("ca", "only for rediss:// URLs (TLS)")
        return self


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


def redis_settings(section: Redis, file: Path) -> RedisSettings:
    return RedisSettings(file, section.url, resolve(file, section.ca),
                         resolve(file, section.password_file), section.key_prefix,
                         section.timeout_seconds, section.revoked_when_unavailable)  # fmt: skip
