"""The proxy's configuration file (config.yaml), read into immutable settings.

config/schema.py declares what the file may say; this turns a file that says it into the
settings the proxy runs on (sizes in bytes, paths resolved against the file's folder). The files
it names (certificates, htpasswd, users.yaml) are read and checked by the modules that use them,
with errors that name this file's key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kube_front_proxy.authn.lockout import LockoutPolicy
from kube_front_proxy.authn.oidc_config import OidcSettings, oidc_settings
from kube_front_proxy.authn.session_token_config import SessionTokenSettings, session_token_settings
from kube_front_proxy.config import schema
from kube_front_proxy.config.declare import problems, resolve
from kube_front_proxy.config.errors import ConfigError, ConfigErrors
from kube_front_proxy.config.yamlfile import read_yaml
from kube_front_proxy.identity.headers import HeaderNames
from kube_front_proxy.state.redis_config import RedisSettings, redis_settings


@dataclass(frozen=True)
class FileRef:
    """A file named in config.yaml, with the key that named it (for error messages)."""

    path: Path
    config_file: Path
    key: str

    def error(self, message: str) -> ConfigError:
        return ConfigError(self.config_file, self.key, f"{self.path}: {message}")


@dataclass(frozen=True)
class UpstreamServer:
    """One API server URL from upstream.servers."""

    url: str
    host: str
    port: int


@dataclass(frozen=True)
class HealthCheck:
    """The active check of every API server; interval 0 turns it off."""

    interval: int
    timeout: int
    path: str


@dataclass(frozen=True)
class Upstream:
    """The API servers: where to connect, how to choose, how to verify them, what to present.

    One server_name for all servers: it is the SNI and the name checked on every server's
    certificate (kubeadm puts `kubernetes` in every control-plane node's apiserver.crt).
    """

    servers: tuple[UpstreamServer, ...]
    ca: FileRef
    server_name: str
    # front-proxy mode presents the client certificate; impersonate mode sends the token.
    client_cert: FileRef | None
    client_key: FileRef | None
    token_file: FileRef | None
    balance: str
    health_check: HealthCheck
    eject_seconds: int
    retries: int
    # Seconds to wait for response headers (0: no limit); watches etc. are exempt after them.
    response_timeout: int
    # At start-up, compare identity.* and client_cert with what the API server publishes.
    check_cluster_trust: bool


@dataclass(frozen=True)
class AuditSettings:
    """The audit log: like kube-apiserver's --audit-log-path, -maxsize and -maxbackup."""

    path: Path
    max_bytes: int
    backups: int
    # Audit events of refused requests (no valid login) a minute, per address and in total;
    # past them such requests are counted (metric, log), not written. 0: never written.
    refused_per_address_per_minute: int
    refused_per_minute: int
    # exec and attach sessions recorded as asciicast files here (sessions/tracking.py); None: not.
    sessions_dir: Path | None
    sessions_max_bytes: int
    # Fail closed: refuse sessions that cannot be recorded.
    sessions_required: bool


@dataclass(frozen=True)
class Settings:
    """Everything config.yaml says."""

    file: Path
    listen_host: str
    listen_port: int
    allow_public_clients: bool
    reuse_port: bool
    serving_cert: FileRef
    serving_key: FileRef
    upstream: Upstream
    header_names: HeaderNames
    identity_mode: str
    allow_client_impersonation: bool
    htpasswd: FileRef | None
    tokens: FileRef | None
    token_hashes: bool
    client_ca: FileRef | None
    oidc: OidcSettings | None
    authn_order: tuple[str, ...]
    users: FileRef | None
    realm: str
    cache_ttl: float
    cache_max_entries: int
    lockout: LockoutPolicy
    reload_interval: float
    metrics_listen: tuple[str, int] | None
    metrics_per_user: bool
    audit: AuditSettings | None
    keep_upgraded_messages: bool
    idle_timeout: int
    max_connections: int
    max_connections_per_client: int
    max_request_head_bytes: int
    max_request_body_bytes: int
    max_websocket_message_bytes: int
    http2_resets_per_minute: int
    # Seconds a client connection has for its TLS handshake, for a request head, and between
    # requests once logged in (client/deadlines.py).
    handshake_timeout: int
    request_header_timeout: int
    keepalive_timeout: int
    http2_stream_buffer_bytes: int
    http2_connection_buffer_bytes: int
    # state.redis: counters shared by every process using the same Redis and key prefix.
    redis: RedisSettings | None
    session_tokens: SessionTokenSettings | None


def load_settings(path: Path) -> Settings:
    """Read config.yaml; raises ConfigError naming the file and the key of every problem."""
    path = path.expanduser().resolve()
    try:
        config = schema.ConfigFile.model_validate(_unset_empty(read_yaml(path)))
    except ValidationError as e:
        raise ConfigErrors.of(problems(path, e, schema.ConfigFile)) from None
    return _settings(path, config)


def _unset_empty(data: Any) -> Any:
    """`key:` with nothing after it leaves the key unset, in every mapping of the file."""
    if isinstance(data, dict):
        return {k: _unset_empty(v) for k, v in data.items() if v is not None}
    if isinstance(data, list):
        return [_unset_empty(item) for item in data]
    return data


def _settings(path: Path, c: schema.ConfigFile) -> Settings:
    def file(dotted: str, name: str) -> FileRef:
        return FileRef(resolve(path, name), path, dotted)

    def optional(dotted: str, name: str | None) -> FileRef | None:
        return None if name is None else file(dotted, name)

    up, authn, limits, audit = c.upstream, c.authn, c.limits, c.audit
    check = up.health_check
    servers = tuple(UpstreamServer(url, *schema.upstream_url(url)) for url in up.servers)
    upstream = Upstream(
        servers=servers,
        ca=file("upstream.ca", up.ca),
        server_name=up.server_name if up.server_name is not None else servers[0].host,
        client_cert=optional("upstream.client_cert", up.client_cert),
        client_key=optional("upstream.client_key", up.client_key),
        token_file=optional("upstream.token_file", up.token_file),
        balance=up.balance,
        health_check=HealthCheck(check.interval_seconds, check.timeout_seconds, check.path),
        eject_seconds=up.eject_seconds,
        retries=up.retries,
        response_timeout=up.response_timeout_seconds,
        check_cluster_trust=up.check_cluster_trust,
    )
    names = c.identity
    mib = 1024 * 1024
    return Settings(
        file=path,
        listen_host=c.listen.host,
        listen_port=c.listen.port,
        allow_public_clients=c.listen.allow_public_clients,
        reuse_port=c.listen.reuse_port,
        serving_cert=file("serving.cert", c.serving.cert),
        serving_key=file("serving.key", c.serving.key),
        upstream=upstream,
        header_names=HeaderNames(
            username=tuple(names.username_headers),
            group=tuple(names.group_headers),
            extra_prefixes=tuple(names.extra_headers_prefixes),
            uid=tuple(names.uid_headers),
        ),
        identity_mode=names.mode,
        allow_client_impersonation=names.allow_client_impersonation,
        htpasswd=optional("authn.htpasswd", authn.htpasswd),
        tokens=optional("authn.tokens", authn.tokens),
        token_hashes=authn.token_hashes,
        client_ca=optional("authn.client_ca", authn.client_ca),
        oidc=oidc_settings(authn.oidc, path, "authn.oidc") if authn.oidc else None,
        authn_order=tuple(authn.order if authn.order is not None else authn.configured()),
        users=optional("authn.users", authn.users),
        realm=authn.realm,
        cache_ttl=authn.cache.ttl_seconds,
        cache_max_entries=authn.cache.max_entries,
        lockout=LockoutPolicy(**authn.lockout.model_dump()),
        reload_interval=c.reload.interval_seconds,
        metrics_listen=schema.host_port(c.metrics.listen) if c.metrics.listen else None,
        metrics_per_user=c.metrics.per_user,
        audit=None
        if audit is None
        else AuditSettings(
            path=resolve(path, audit.path),
            max_bytes=audit.max_size_mb * mib,
            backups=audit.max_backups,
            refused_per_address_per_minute=audit.refused_per_address_per_minute,
            refused_per_minute=audit.refused_per_minute,
            sessions_dir=resolve(path, audit.sessions_dir),
            sessions_max_bytes=audit.sessions_max_mb * mib,
            sessions_required=audit.sessions_required,
        ),
        keep_upgraded_messages=c.upgrades.keep_messages,
        idle_timeout=c.connections.idle_timeout_seconds,
        max_connections=c.connections.max_total,
        max_connections_per_client=c.connections.max_per_client,
        max_request_head_bytes=limits.max_request_header_kb * 1024,
        max_request_body_bytes=limits.max_request_body_mb * mib,
        max_websocket_message_bytes=limits.max_websocket_message_mb * mib,
        http2_resets_per_minute=limits.http2_resets_per_minute,
        handshake_timeout=limits.handshake_timeout_seconds,
        request_header_timeout=limits.request_header_timeout_seconds,
        keepalive_timeout=limits.keepalive_timeout_seconds,
        http2_stream_buffer_bytes=limits.http2_stream_buffer_kb * 1024,
        http2_connection_buffer_bytes=limits.http2_connection_buffer_kb * 1024,
        redis=redis_settings(c.state.redis, path) if c.state.redis else None,
        session_tokens=(
            session_token_settings(authn.session_tokens, path, "authn.session_tokens")
            if authn.session_tokens
            else None
        ),
    )
