"""The proxy's configuration file (config.yaml), parsed once into immutable settings.

Only the structure is checked here; the files it names (certificates, htpasswd, users.yaml)
are read and checked by the modules that use them, with errors that name this file's key.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from kube_front_proxy.authn.lockout import LockoutPolicy
from kube_front_proxy.authn.oidc_config import OidcSettings, oidc_settings
from kube_front_proxy.authn.session_token_config import SessionTokenSettings, session_token_settings
from kube_front_proxy.config.errors import ConfigError
from kube_front_proxy.config.yamlfile import Section, read_mapping
from kube_front_proxy.identity.headers import HeaderNames, is_token
from kube_front_proxy.state.redis_config import RedisSettings, redis_settings

# The order kube-apiserver tries its own: certificates, token file, OIDC; Basic last. The
# proxy's own session tokens come next to the static ones: a signature check, no I/O.
AUTHENTICATORS = ("x509", "token", "session-token", "oidc", "htpasswd")
SESSION_TOKEN = "session-token"
# identity.mode: front-proxy headers over the proxy's client certificate, or Impersonate-*
# headers with the proxy's service-account token.
FRONT_PROXY = "front-proxy"
IMPERSONATE = "impersonate"


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
    response_timeout: int = 60
    # At start-up, compare identity.* and client_cert with what the API server publishes.
    check_cluster_trust: bool = True


@dataclass(frozen=True)
class AuditSettings:
    """The audit log: like kube-apiserver's --audit-log-path, -maxsize and -maxbackup."""

    path: Path
    max_bytes: int
    backups: int
    # Audit events of refused requests (no valid login) a minute, per address and in total;
    # past them such requests are counted (metric, log), not written. 0: never written.
    refused_per_address_per_minute: int = 60
    refused_per_minute: int = 600
    # exec and attach sessions recorded as asciicast files here (sessions/tracking.py); None: not.
    sessions_dir: Path | None = None
    sessions_max_bytes: int = 100 * 1024 * 1024
    # Fail closed: refuse sessions that cannot be recorded.
    sessions_required: bool = False


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
    max_request_head_bytes: int = 64 * 1024
    max_request_body_bytes: int = 3 * 1024 * 1024
    max_websocket_message_bytes: int = 4 * 1024 * 1024
    http2_resets_per_minute: int = 100
    # Seconds a client connection has for its TLS handshake, for a request head, and between
    # requests once logged in (client/deadlines.py).
    handshake_timeout: int = 10
    request_header_timeout: int = 10
    keepalive_timeout: int = 90
    http2_stream_buffer_bytes: int = 1024 * 1024
    http2_connection_buffer_bytes: int = 8 * 1024 * 1024
    # state.redis: counters shared by every process using the same Redis and key prefix.
    redis: RedisSettings | None = None
    session_tokens: SessionTokenSettings | None = None


def load_settings(path: Path) -> Settings:
    """Read config.yaml; raises ConfigError naming the file and key of the first problem."""
    path = path.expanduser().resolve()
    root = read_mapping(path)

    listen = root.section("listen")
    listen_host = listen.string("host", "127.0.0.1")
    _check_host(listen, "host", listen_host)
    listen_port = listen.integer("port", 8443)
    if not 0 < listen_port < 65536:
        raise listen.error("port", f"must be between 1 and 65535, not {listen_port}")
    allow_public_clients = listen.boolean("allow_public_clients", True)
    reuse_port = listen.boolean("reuse_port", False)
    listen.finish()

    serving = root.section("serving", required=True)
    serving_cert = _file(serving, "cert")
    serving_key = _file(serving, "key")
    serving.finish()

    upstream = _upstream(root.section("upstream", required=True))
    identity = root.section("identity")
    identity_mode = identity.string("mode", FRONT_PROXY)
    if identity_mode not in (FRONT_PROXY, IMPERSONATE):
        raise identity.error("mode", f"must be {FRONT_PROXY} or {IMPERSONATE}, "
                             f"not {identity_mode!r}")  # fmt: skip
    allow_client_impersonation = identity.boolean("allow_client_impersonation", False)
    if allow_client_impersonation and identity_mode == IMPERSONATE:
        # The API server takes one impersonation per request, and the proxy's is it.
        raise identity.error("allow_client_impersonation", f"cannot be true in mode {IMPERSONATE}")
    header_names = _header_names(identity)
    _check_upstream_credentials(root.section("upstream"), upstream, identity_mode)

    authn = root.section("authn", required=True)
    htpasswd = _optional_file(authn, "htpasswd")
    tokens = _optional_file(authn, "tokens")
    token_hashes = authn.boolean("token_hashes", False)
    client_ca = _optional_file(authn, "client_ca")
    oidc = oidc_settings(authn.section("oidc")) if authn.has("oidc") else None
    session_tokens = (
        session_token_settings(authn.section("session_tokens"))
        if authn.has("session_tokens")
        else None
    )
    configured = {"x509": client_ca, "token": tokens, SESSION_TOKEN: session_tokens,
                  "oidc": oidc, "htpasswd": htpasswd}  # fmt: skip
    order = _authn_order(authn, [name for name, ref in configured.items() if ref])
    users = _optional_file(authn, "users")
    realm = authn.string("realm", "kubernetes")
    if not realm or any(c in realm for c in '"\\') or not realm.isprintable():
        raise authn.error("realm", "must be printable text without quotes or backslashes")
    cache = authn.section("cache")
    cache_ttl = cache.integer("ttl_seconds", 300)
    cache_max_entries = cache.integer("max_entries", 10000)
    if cache_ttl < 0:
        raise cache.error("ttl_seconds", "must be 0 (no cache) or more")
    if cache_max_entries < 1:
        raise cache.error("max_entries", "must be at least 1")
    cache.finish()
    lockout = _lockout(authn.section("lockout"))
    authn.finish()

    reload = root.section("reload")
    reload_interval = reload.integer("interval_seconds", 2)
    if reload_interval < 0:
        raise reload.error("interval_seconds", "must be 0 (no reload) or more")
    reload.finish()

    metrics = root.section("metrics")
    metrics_listen = _host_port(metrics, "listen") if metrics.has("listen") else None
    metrics_per_user = metrics.boolean("per_user", False)
    metrics.finish()

    audit_section = root.section("audit")
    audit = _audit(audit_section) if audit_section.names() else None
    audit_section.finish()

    upgrades = root.section("upgrades")
    keep_upgraded_messages = upgrades.boolean("keep_messages", False)
    upgrades.finish()

    connections = root.section("connections")
    # The kubelet's --streaming-connection-idle-timeout (exec, attach, port-forward) is 4 h;
    # kube-apiserver ends watches after 30-60 min (--min-request-timeout): mitmproxy's own
    # 10 min would cut a quiet watch or an idle shell first.
    idle_timeout = connections.integer("idle_timeout_seconds", 4 * 3600)
    if idle_timeout < 1:
        raise connections.error("idle_timeout_seconds", "must be at least 1")
    max_connections = connections.integer("max_total", 2000)
    max_connections_per_client = connections.integer("max_per_client", 200)
    for key, value in (
        ("max_total", max_connections),
        ("max_per_client", max_connections_per_client),
    ):
        if value < 1:
            raise connections.error(key, "must be at least 1")
    connections.finish()

    limits = root.section("limits")
    max_request_head_bytes, max_request_body_bytes, max_websocket_message_bytes = _limits(limits)
    http2_resets_per_minute = _http2_resets(limits)
    handshake_timeout, request_header_timeout, keepalive_timeout = _client_timeouts(limits)
    http2_stream_buffer_bytes, http2_connection_buffer_bytes = _http2_buffers(limits)
    limits.finish()

    state = root.section("state")
    redis = redis_settings(state.section("redis")) if state.has("redis") else None
    state.finish()

    root.finish()
    return Settings(
        file=path,
        listen_host=listen_host,
        listen_port=listen_port,
        allow_public_clients=allow_public_clients,
        reuse_port=reuse_port,
        serving_cert=serving_cert,
        serving_key=serving_key,
        upstream=upstream,
        header_names=header_names,
        identity_mode=identity_mode,
        allow_client_impersonation=allow_client_impersonation,
        htpasswd=htpasswd,
        tokens=tokens,
        token_hashes=token_hashes,
        client_ca=client_ca,
        oidc=oidc,
        authn_order=order,
        users=users,
        realm=realm,
        cache_ttl=cache_ttl,
        cache_max_entries=cache_max_entries,
        lockout=lockout,
        reload_interval=reload_interval,
        metrics_listen=metrics_listen,
        metrics_per_user=metrics_per_user,
        audit=audit,
        keep_upgraded_messages=keep_upgraded_messages,
        idle_timeout=idle_timeout,
        max_connections=max_connections,
        max_connections_per_client=max_connections_per_client,
        max_request_head_bytes=max_request_head_bytes,
        max_request_body_bytes=max_request_body_bytes,
        max_websocket_message_bytes=max_websocket_message_bytes,
        http2_resets_per_minute=http2_resets_per_minute,
        handshake_timeout=handshake_timeout,
        request_header_timeout=request_header_timeout,
        keepalive_timeout=keepalive_timeout,
        redis=redis,
        http2_stream_buffer_bytes=http2_stream_buffer_bytes,
        http2_connection_buffer_bytes=http2_connection_buffer_bytes,
        session_tokens=session_tokens,
    )


def _response_timeout(section: Section) -> int:
    # kube-apiserver's own --request-timeout is 60 s: a slower answer is its own 504 anyway.
    seconds = section.integer("response_timeout_seconds", 60)
    if seconds < 0:
        raise section.error("response_timeout_seconds", "must be 0 (no limit) or more")
    return seconds


def _http2_buffers(section: Section) -> tuple[int, int]:
    """What an HTTP/2 client that reads slowly makes the proxy hold of responses, in bytes: per
    stream (the upstream's HTTP/2 window) and per connection (seam/h2_flow_control.py).

    At least 64 KiB, HTTP/2's default window (a smaller one would refuse data sent before the
    upstream saw it); at most 2 GiB - 1, the largest window.
    """
    stream_kb = section.integer("http2_stream_buffer_kb", 1024)
    connection_kb = section.integer("http2_connection_buffer_kb", 8192)
    largest = (2**31 - 1) // 1024
    if not 64 <= stream_kb <= largest:
        raise section.error("http2_stream_buffer_kb", f"must be between 64 and {largest}")
    if not stream_kb <= connection_kb <= largest:
        raise section.error(
            "http2_connection_buffer_kb", f"must be between http2_stream_buffer_kb and {largest}"
        )
    return stream_kb * 1024, connection_kb * 1024


def _limits(section: Section) -> tuple[int, int, int]:
    """Request head and body limits, and the WebSocket message limit, in bytes.

    The body default is kube-apiserver's MaxRequestBodyBytes (3 MiB, k8s.io/apiserver/pkg/server/
    config.go): the proxy refuses nothing the API server would take. The head default is twice
    nginx's (4 x 8 KiB buffers) and what HTTP/2 allows here anyway (hpack: 64 KiB). The largest
    WebSocket message the API server sends is one watch event, one object (etcd takes 1.5 MiB,
    a Secret's JSON is a third larger); kubectl's exec, cp and port-forward frames are at most
    33 KiB: 4 MiB keeps both, and bounds what a session holds.
    """
    head_kb = section.integer("max_request_header_kb", 64)
    body_mb = section.integer("max_request_body_mb", 3)
    websocket_mb = section.integer("max_websocket_message_mb", 4)
    if head_kb < 1:
        raise section.error("max_request_header_kb", "must be at least 1")
    if body_mb < 1:
        raise section.error("max_request_body_mb", "must be at least 1")
    if websocket_mb < 1:
        raise section.error("max_websocket_message_mb", "must be at least 1")
    return head_kb * 1024, body_mb * 1024 * 1024, websocket_mb * 1024 * 1024


def _http2_resets(section: Section) -> int:
    """RST_STREAM frames a client may send per minute on one connection (rapid reset). Netty
    allows 200 per 30 s; kubectl resets a stream only when a request is cancelled."""
    per_minute = section.integer("http2_resets_per_minute", 100)
    if per_minute < 1:
        raise section.error("http2_resets_per_minute", "must be at least 1")
    return per_minute


def _client_timeouts(section: Section) -> tuple[int, int, int]:
    """Slowloris: a TLS handshake and a request head must not take long (nginx's
    ssl_handshake_timeout and client_header_timeout; kube-apiserver's ReadHeaderTimeout is
    32 s). Between requests, kube-apiserver's IdleTimeout (90 s)."""
    values = []
    for key, default in (
        ("handshake_timeout_seconds", 10),
        ("request_header_timeout_seconds", 10),
        ("keepalive_timeout_seconds", 90),
    ):
        seconds = section.integer(key, default)
        if seconds < 1:
            raise section.error(key, "must be at least 1")
        values.append(seconds)
    handshake, header, keepalive = values
    return handshake, header, keepalive


def _authn_order(section: Section, configured: list[str]) -> tuple[str, ...]:
    # Session tokens are issued to logins of the other kinds: alone, nobody could get one.
    if not [name for name in configured if name != SESSION_TOKEN]:
        raise section.error(
            "htpasswd", "missing: configure at least one of htpasswd, tokens, client_ca, oidc"
        )
    if not section.has("order"):
        return tuple(name for name in AUTHENTICATORS if name in configured)
    order = section.string_list("order")
    for i, name in enumerate(order):
        if name not in AUTHENTICATORS:
            raise section.error(f"order[{i}]", f"unknown authenticator {name!r}; "
                                f"known: {', '.join(AUTHENTICATORS)}")  # fmt: skip
        if name not in configured:
            raise section.error(f"order[{i}]", f"{name} is listed but not configured")
        if name in order[:i]:
            raise section.error(f"order[{i}]", f"{name} is listed twice")
    missing = [name for name in configured if name not in order]
    if missing:
        raise section.error("order", f"configured but not listed: {', '.join(missing)}")
    return order


def _audit(section: Section) -> AuditSettings:
    max_mb = section.integer("max_size_mb", 100)
    backups = section.integer("max_backups", 10)
    if max_mb < 0:
        raise section.error("max_size_mb", "must be 0 (never rotate) or more")
    if max_mb and backups < 1:
        raise section.error("max_backups", "must be at least 1 when the log rotates")
    per_address = section.integer("refused_per_address_per_minute", 60)
    total = section.integer("refused_per_minute", 600)
    for key, value in (("refused_per_address_per_minute", per_address),
                       ("refused_per_minute", total)):  # fmt: skip
        if value < 0:
            raise section.error(key, "must be 0 (refused requests are not audited) or more")
    sessions_dir = section.optional_path("sessions_dir")
    sessions_mb = section.integer("sessions_max_mb", 100)
    if sessions_mb < 1:
        raise section.error("sessions_max_mb", "must be at least 1")
    sessions_required = section.boolean("sessions_required", False)
    if sessions_required and sessions_dir is None:
        raise section.error("sessions_required", "needs audit.sessions_dir")
    return AuditSettings(section.path("path"), max_mb * 1024 * 1024, backups, per_address, total,
                         sessions_dir, sessions_mb * 1024 * 1024, sessions_required)  # fmt: skip


def _host_port(section: Section, key: str) -> tuple[str, int]:
    value = section.string(key)
    host, colon, port = value.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        raise section.error(key, f"must be HOST:PORT, not {value!r}")
    host = host.strip("[]")
    _check_host(section, key, host)
    return host, int(port)


def _lockout(section: Section) -> LockoutPolicy:
    for old in ("user_failures", "client_failures", "first_seconds", "max_seconds"):
        if section.has(old):
            raise section.error(old, "replaced by per_address, per_user_and_address, per_user "
                                "and per_address_past_user_budget (failures per day)")  # fmt: skip
    default = LockoutPolicy()
    values = {}
    for key in ("per_address", "per_user_and_address", "per_user",
                "per_address_past_user_budget", "max_tracked"):  # fmt: skip
        value = section.integer(key, getattr(default, key))
        if value < 1:
            raise section.error(key, "must be at least 1")
        values[key] = value
    section.finish()
    return LockoutPolicy(**values)


def _file(section: Section, key: str) -> FileRef:
    return FileRef(section.path(key), section.file, f"{section.key}.{key}")


def _optional_file(section: Section, key: str) -> FileRef | None:
    path = section.optional_path(key)
    return FileRef(path, section.file, f"{section.key}.{key}") if path else None


def _check_host(section: Section, key: str, host: str) -> None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not host or any(not (c.isalnum() or c in "-.") for c in host):
            raise section.error(key, f"not an IP address or host name: {host!r}") from None


def _upstream(section: Section) -> Upstream:
    urls = section.string_list("servers")
    if not urls:
        raise section.error(
            "servers", "missing: list the API server URLs, e.g. https://10.0.0.1:6443"
        )
    servers = tuple(_upstream_server(section, f"servers[{i}]", url) for i, url in enumerate(urls))
    addresses = [(s.host, s.port) for s in servers]
    for i, address in enumerate(addresses):
        if address in addresses[:i]:
            raise section.error(f"servers[{i}]", f"{urls[i]!r} is listed twice")
    hosts = {s.host for s in servers}
    if section.has("server_name") or len(hosts) == 1:
        server_name = section.string("server_name", servers[0].host)
    else:
        # Each server's certificate is checked for this one name, so it cannot be guessed.
        raise section.error(
            "server_name", "missing: the servers differ in host, so name the SAN they share"
        )
    if not server_name:
        raise section.error("server_name", "must not be empty")
    _check_host(section, "server_name", server_name)
    balance = section.string("balance", "least_outstanding")
    if balance not in ("least_outstanding", "round_robin"):
        raise section.error("balance", f"must be least_outstanding or round_robin, not {balance!r}")
    eject_seconds = section.integer("eject_seconds", 10)
    if eject_seconds < 0:
        raise section.error("eject_seconds", "must be 0 (no passive ejection) or more")
    retries = section.integer("retries", 1)
    if retries < 0:
        raise section.error("retries", "must be 0 (never retry) or more")
    upstream = Upstream(
        servers=servers,
        ca=_file(section, "ca"),
        server_name=server_name,
        client_cert=_optional_file(section, "client_cert"),
        client_key=_optional_file(section, "client_key"),
        token_file=_optional_file(section, "token_file"),
        balance=balance,
        health_check=_health_check(section.section("health_check")),
        eject_seconds=eject_seconds,
        retries=retries,
        response_timeout=_response_timeout(section),
        check_cluster_trust=section.boolean("check_cluster_trust", True),
    )
    section.finish()
    return upstream


def _check_upstream_credentials(section: Section, upstream: Upstream, mode: str) -> None:
    """Exactly the credential of the identity mode: with both, the API server would take the
    certificate's identity (x509 comes before tokens) and the impersonation would be its."""
    certificate = (("client_cert", upstream.client_cert), ("client_key", upstream.client_key))
    if mode == FRONT_PROXY:
        for key, ref in certificate:
            if ref is None:
                raise section.error(key, "missing: the front-proxy client certificate is required")
        if upstream.token_file:
            raise section.error("token_file", f"only used with identity.mode {IMPERSONATE}")
    else:
        if upstream.token_file is None:
            raise section.error("token_file", f"missing: identity.mode {IMPERSONATE} needs "
                                "the proxy's service-account token")  # fmt: skip
        for key, ref in certificate:
            if ref:
                raise section.error(key, f"not used with identity.mode {IMPERSONATE}: remove it")


def _upstream_server(section: Section, key: str, url: str) -> UpstreamServer:
    parts = urlsplit(url)
    try:
        port = parts.port or 443
    except ValueError:
        raise section.error(key, f"invalid port in {url!r}") from None
    if parts.scheme != "https" or not parts.hostname:
        raise section.error(key, f"must be an https:// URL, not {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise section.error(key, f"must be https://HOST[:PORT] only, not {url!r}")
    return UpstreamServer(url, parts.hostname, port)


def _health_check(section: Section) -> HealthCheck:
    interval = section.integer("interval_seconds", 5)
    timeout = section.integer("timeout_seconds", 2)
    path = section.string("path", "/readyz")
    if interval < 0:
        raise section.error("interval_seconds", "must be 0 (no active checks) or more")
    if timeout < 1:
        raise section.error("timeout_seconds", "must be at least 1")
    if not path.startswith("/") or not path.isprintable() or " " in path:
        raise section.error("path", f"must be an absolute path such as /readyz, not {path!r}")
    section.finish()
    return HealthCheck(interval, timeout, path)


def _header_names(section: Section) -> HeaderNames:
    default = HeaderNames()
    lists = {
        "username_headers": default.username,
        "group_headers": default.group,
        "extra_headers_prefixes": default.extra_prefixes,
        "uid_headers": default.uid,
    }
    values: dict[str, tuple[str, ...]] = {}
    for key, fallback in lists.items():
        names = section.string_list(key, fallback)
        for i, name in enumerate(names):
            if not is_token(name):
                raise section.error(f"{key}[{i}]", f"not a valid HTTP header name: {name!r}")
        values[key] = names
    if not values["username_headers"]:
        raise section.error("username_headers", "must name at least one header")
    section.finish()
    return HeaderNames(
        username=values["username_headers"],
        group=values["group_headers"],
        extra_prefixes=values["extra_headers_prefixes"],
        uid=values["uid_headers"],
    )
