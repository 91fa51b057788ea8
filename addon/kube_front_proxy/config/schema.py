"""config.yaml, declared: every section, every key, its type, default, bounds and meaning.

This is the one place a key or its default is written down. config/settings.py turns a valid
file into the settings the proxy runs on; config/reference.py makes the JSON Schema
(config/config.schema.json) and the table in docs/configuration.md from these classes. Rules
between keys are the sections' model validators; each names the key to fix.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, ClassVar, Literal, get_args
from urllib.parse import urlsplit

from pydantic import AfterValidator, model_validator

from kube_front_proxy.authn.lockout import LockoutPolicy
from kube_front_proxy.authn.oidc_config import Oidc
from kube_front_proxy.authn.session_token_config import SessionTokens
from kube_front_proxy.config.declare import NONE, FileName, KeyProblem, Section, key
from kube_front_proxy.identity.headers import DEFAULT_NAMES, is_token
from kube_front_proxy.state.redis_config import Redis

# The order kube-apiserver tries its own: certificates, token file, OIDC; Basic last. The
# proxy's own session tokens come next to the static ones: a signature check, no I/O.
Authenticator = Literal["x509", "token", "session-token", "oidc", "htpasswd"]
AUTHENTICATORS: tuple[str, ...] = get_args(Authenticator)
SESSION_TOKEN = "session-token"
# identity.mode: front-proxy headers over the proxy's client certificate, or Impersonate-*
# headers with the proxy's service-account token.
FRONT_PROXY = "front-proxy"
IMPERSONATE = "impersonate"
# The largest HTTP/2 window, 2 GiB - 1, in KiB.
_LARGEST_WINDOW_KB = (2**31 - 1) // 1024


def check_host(host: str) -> str:
    """An IP address or a host name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not host or any(not (c.isalnum() or c in "-.") for c in host):
            raise ValueError(f"not an IP address or host name: {host!r}") from None
    return host


def upstream_url(url: str) -> tuple[str, int]:
    """An API server URL from upstream.servers: its host and port."""
    parts = urlsplit(url)
    try:
        port = parts.port or 443
    except ValueError:
        raise ValueError(f"invalid port in {url!r}") from None
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"must be an https:// URL, not {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"must be https://HOST[:PORT] only, not {url!r}")
    return parts.hostname, port


def host_port(value: str) -> tuple[str, int]:
    """HOST:PORT, such as 127.0.0.1:9095 or [::1]:9095."""
    host, colon, port = value.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"must be HOST:PORT, not {value!r}")
    return check_host(host.strip("[]")), int(port)


def _upstream_url(url: str) -> str:
    upstream_url(url)
    return url


def _host_port(value: str) -> str:
    host_port(value)
    return value


def _header_name(name: str) -> str:
    if not is_token(name):
        raise ValueError(f"not a valid HTTP header name: {name!r}")
    return name


def _health_path(path: str) -> str:
    if not path.startswith("/") or not path.isprintable() or " " in path:
        raise ValueError(f"must be an absolute path such as /readyz, not {path!r}")
    return path


def _realm(realm: str) -> str:
    if not realm or any(c in realm for c in '"\\') or not realm.isprintable():
        raise ValueError("must be printable text without quotes or backslashes")
    return realm


Host = Annotated[str, AfterValidator(check_host)]
HeaderName = Annotated[str, AfterValidator(_header_name)]


class Listen(Section):
    host: Host = key("127.0.0.1", "address the proxy listens on (`listen`)")
    port: int = key(8443, "port the proxy listens on", ge=1, le=65535)
    allow_public_clients: bool = key(
        True, "accept clients from public IP addresses; `false` keeps mitmproxy's "
        "`block_global` guard",
    )  # fmt: skip
    reuse_port: bool = key(
        False, "open the listener with `SO_REUSEPORT`, so that several proxy processes with this "
        "config share the port (the kernel spreads connections)",
    )  # fmt: skip


class Serving(Section):
    cert: FileName = key(doc="PEM certificate (chain) shown to users (`ssl_certificate`)")
    key: FileName = key(doc="its private key (`ssl_certificate_key`)")


class HealthCheck(Section):
    interval_seconds: int = key(
        5, "how often every server's `/readyz` is checked over the proxy's mutual TLS (as user "
        "`system:kube-front-proxy:health-check`; with the token in impersonation mode); `0` "
        "turns checks off. Not with a single server", ge=0,
    )  # fmt: skip
    timeout_seconds: int = key(2, "a slower check fails", ge=1)
    path: Annotated[str, AfterValidator(_health_path)] = key(
        "/readyz", "the path checked; only 200 passes"
    )


class Upstream(Section):
    servers: list[Annotated[str, AfterValidator(_upstream_url)]] = key(
        doc="API server URLs, `https://HOST[:PORT]`, one or more (`proxy_pass`, "
        "`upstream { server ...; }`)", min_length=1,
    )  # fmt: skip
    ca: FileName = key(doc="CA bundle that verifies the API servers "
                       "(`proxy_ssl_trusted_certificate`)")  # fmt: skip
    server_name: Annotated[str, AfterValidator(check_host)] | None = key(
        None, "name checked on **every** server's certificate, and sent as SNI "
        "(`proxy_ssl_name`); required when the hosts differ (kubeadm: `kubernetes`)",
        shown="the servers' host, if they all share one",
    )  # fmt: skip
    client_cert: FileName | None = key(
        None, "front-proxy client certificate (`proxy_ssl_certificate`); not allowed in "
        "impersonation mode", shown="required in front-proxy mode",
    )  # fmt: skip
    client_key: FileName | None = key(
        None, "its private key (`proxy_ssl_certificate_key`)", shown="required in front-proxy mode"
    )
    token_file: FileName | None = key(
        None, "file with the proxy's service-account token; only in impersonation mode",
        shown="required in impersonation mode",
    )  # fmt: skip
    balance: Literal["least_outstanding", "round_robin"] = key(
        "least_outstanding", "`least_outstanding` (fewest requests waiting for a response head; "
        "ties take turns) or `round_robin`",
    )  # fmt: skip
    health_check: HealthCheck = key(section=HealthCheck)
    eject_seconds: int = key(
        10, "a server that refuses or drops a connection is skipped this long, doubled per "
        "failure in a row (at most 32x); `0` turns this off", ge=0,
    )  # fmt: skip
    retries: int = key(
        1, "other servers a GET or HEAD is sent to when its connection fails before any "
        "response byte", ge=0,
    )  # fmt: skip
    check_cluster_trust: bool = key(
        True, "before serving, read `kube-system/extension-apiserver-authentication`: strip "
        "every identity header name the API server reads, and serve only while no difference "
        "with its `--requestheader-*` flags would cost users their identity (503 and a failing "
        "`/readyz` otherwise, checked again every 10 s); front-proxy mode only",
    )  # fmt: skip
    # kube-apiserver's own --request-timeout is 60 s: a slower answer is its own 504 anyway.
    response_timeout_seconds: int = key(
        60, "wait this long for the API server's response headers, then answer 504 and close "
        "the upstream connection (`proxy_read_timeout`; kube-apiserver's `--request-timeout` "
        "is 60 s). Watches, `logs -f` and exec are exempt once their headers arrived; `0` "
        "turns it off", ge=0,
    )  # fmt: skip

    @model_validator(mode="after")
    def _servers(self) -> Upstream:
        addresses = [upstream_url(url) for url in self.servers]
        for i, address in enumerate(addresses):
            if address in addresses[:i]:
                raise KeyProblem(f"servers[{i}]", f"{self.servers[i]!r} is listed twice")
        if self.server_name is None and len({host for host, _ in addresses}) > 1:
            # Each server's certificate is checked for this one name, so it cannot be guessed.
            raise KeyProblem(
                "server_name", "missing: the servers differ in host, so name the SAN they share"
            )
        return self


class Identity(Section):
    mode: Literal["front-proxy", "impersonate"] = key(
        FRONT_PROXY, "`front-proxy` (headers below, over the client certificate) or "
        "`impersonate` (`Impersonate-*` headers with `upstream.token_file`)",
    )  # fmt: skip
    allow_client_impersonation: bool = key(
        False, "let client-sent `Impersonate-*` headers (`kubectl --as`) through to the API "
        "server, which checks them; front-proxy mode only",
    )  # fmt: skip
    username_headers: list[HeaderName] = key(
        list(DEFAULT_NAMES.username), "the API server's `--requestheader-username-headers`",
        min_length=1,
    )  # fmt: skip
    group_headers: list[HeaderName] = key(
        list(DEFAULT_NAMES.group), "`--requestheader-group-headers`"
    )
    extra_headers_prefixes: list[HeaderName] = key(
        list(DEFAULT_NAMES.extra_prefixes), "`--requestheader-extra-headers-prefix`"
    )
    uid_headers: list[HeaderName] = key(
        list(DEFAULT_NAMES.uid), "`--requestheader-uid-headers` (1.32+); `[]` for older servers"
    )

    @model_validator(mode="after")
    def _one_impersonation(self) -> Identity:
        if self.allow_client_impersonation and self.mode == IMPERSONATE:
            # The API server takes one impersonation per request, and the proxy's is it.
            raise KeyProblem("allow_client_impersonation",
                             f"cannot be true in mode {IMPERSONATE}")  # fmt: skip
        return self


class Cache(Section):
    ttl_seconds: int = key(
        300, "how long a successful password check is remembered; `0` turns the cache off", ge=0
    )
    max_entries: int = key(10000, "most remembered checks; the least recently used go first", ge=1)


_LOCKOUT = LockoutPolicy()


class Lockout(Section):
    retired: ClassVar[dict[str, str]] = dict.fromkeys(
        ("user_failures", "client_failures", "first_seconds", "max_seconds"),
        "replaced by per_address, per_user_and_address, per_user and "
        "per_address_past_user_budget (failures per day)",
    )

    per_address: int = key(
        _LOCKOUT.per_address, "failed logins per day from one client address, all user names "
        "together (that many at once, then one every 24 h / 50)", ge=1,
    )  # fmt: skip
    per_user_and_address: int = key(
        _LOCKOUT.per_user_and_address, "failed logins per day for one user name from one "
        "address", ge=1,
    )  # fmt: skip
    per_user: int = key(
        _LOCKOUT.per_user, "failed logins per day for one user name from all addresses "
        "together; past it, the name's passwords are checked only from addresses with "
        "`per_address_past_user_budget` left", ge=1,
    )  # fmt: skip
    per_address_past_user_budget: int = key(
        _LOCKOUT.per_address_past_user_budget, "passwords per day one address may still try "
        "for user names past their `per_user` budget", ge=1,
    )  # fmt: skip
    max_tracked: int = key(
        _LOCKOUT.max_tracked, "most counters kept of each kind (addresses, user names, pairs); "
        "a live counter is never dropped to make room (see "
        "[Security model](security.md#security-model))", ge=1,
    )  # fmt: skip


class Authn(Section):
    htpasswd: FileName | None = key(
        None, "Apache htpasswd file (`auth_basic_user_file`); at least one of `htpasswd`, "
        "`tokens`, `client_ca`, `oidc` is required", shown=NONE,
    )  # fmt: skip
    tokens: FileName | None = key(
        None, "static bearer tokens, kube-apiserver's `--token-auth-file` format: "
        '`token,user,uid,"group1,group2"`', shown=NONE,
    )  # fmt: skip
    token_hashes: bool = key(
        False, "the first column of `authn.tokens` holds the SHA-256 (hex) of each token, not "
        "the token",
    )  # fmt: skip
    client_ca: FileName | None = key(
        None, "CA bundle that signs users' client certificates; CN is the user, O the groups "
        "(`ssl_client_certificate` with `ssl_verify_client optional`)", shown=NONE,
    )  # fmt: skip
    oidc: Oidc | None = key(None)
    session_tokens: SessionTokens | None = key(None)
    order: list[Authenticator] | None = key(
        None, "the order the authenticators are tried in; must name exactly the configured ones",
        shown="`[x509, token, session-token, oidc, htpasswd]`, those configured",
    )  # fmt: skip
    users: FileName | None = key(
        None, "`users.yaml` with each user's groups, uid and extras", shown=NONE
    )
    realm: Annotated[str, AfterValidator(_realm)] = key(
        "kubernetes", 'realm in `WWW-Authenticate: Basic realm="..."` (`auth_basic`)'
    )
    cache: Cache = key(section=Cache)
    lockout: Lockout = key(section=Lockout)

    def configured(self) -> list[str]:
        """The authenticators this section sets up, in kube-apiserver's order."""
        present = {"x509": self.client_ca, "token": self.tokens,
                   SESSION_TOKEN: self.session_tokens, "oidc": self.oidc,
                   "htpasswd": self.htpasswd}  # fmt: skip
        return [name for name in AUTHENTICATORS if present[name]]

    @model_validator(mode="after")
    def _order(self) -> Authn:
        configured = self.configured()
        # Session tokens are issued to logins of the other kinds: alone, nobody could get one.
        if not [name for name in configured if name != SESSION_TOKEN]:
            raise KeyProblem(
                "htpasswd", "missing: configure at least one of htpasswd, tokens, client_ca, oidc"
            )
        if self.order is None:
            return self
        for i, name in enumerate(self.order):
            if name not in configured:
                raise KeyProblem(f"order[{i}]", f"{name} is listed but not configured")
            if name in self.order[:i]:
                raise KeyProblem(f"order[{i}]", f"{name} is listed twice")
        missing = [name for name in configured if name not in self.order]
        if missing:
            raise KeyProblem("order", f"configured but not listed: {', '.join(missing)}")
        return self


class Reload(Section):
    interval_seconds: int = key(
        2, "how often the files are checked for changes (live reload); `0` turns reload off",
        ge=0,
    )  # fmt: skip


class Metrics(Section):
    listen: Annotated[str, AfterValidator(_host_port)] | None = key(
        None, "`HOST:PORT` for Prometheus metrics at `/metrics`", shown="none (no metrics)"
    )
    per_user: bool = key(
        False, "add a `user` label to the request counter: one series per logged-in user, up to "
        "1,000 users (the rest share `other`)",
    )  # fmt: skip


class Audit(Section):
    path: FileName = key(
        doc="audit log file, JSON lines of `audit.k8s.io/v1` events (`--audit-log-path`)",
        shown="none (no audit log)",
    )
    max_size_mb: int = key(
        100, "rotate the audit log at this size; `0` never rotates (`--audit-log-maxsize`)", ge=0
    )
    max_backups: int = key(
        10, "rotated files kept: `audit.log.1` ... (`--audit-log-maxbackup`); at least 1 when "
        "the log rotates",
    )  # fmt: skip
    refused_per_address_per_minute: int = key(
        60, "refused requests (no valid login) audited per client address a minute; the rest "
        "are counted (`kube_front_proxy_audit_refused_unwritten_total`) and summed up in the log "
        "once a minute", ge=0,
    )  # fmt: skip
    refused_per_minute: int = key(
        600, "the same, all addresses together; `0`: refused requests are never audited. A "
        "refused request's URI and claimed user are cut at 1 KB, so clients without a login "
        "write at most about 30 KB/s (2.5 KB/s from one address)", ge=0,
    )  # fmt: skip
    sessions_dir: FileName | None = key(
        None, "record every exec and attach session as `<dir>/<auditID>.cast` (asciicast v2), "
        "created 0700 if missing; needs `audit.path`", shown="none (no recordings)",
    )  # fmt: skip
    sessions_max_mb: int = key(
        100, "largest recording file per session; past it the session's bytes are counted, not "
        "written", ge=1,
    )  # fmt: skip
    sessions_required: bool = key(
        False, "fail closed: refuse exec and attach (503) while their recording cannot be "
        "created, and close a session whose recording fails",
    )  # fmt: skip

    @model_validator(mode="after")
    def _rules(self) -> Audit:
        if self.max_size_mb and self.max_backups < 1:
            raise KeyProblem("max_backups", "must be at least 1 when the log rotates")
        if self.sessions_required and self.sessions_dir is None:
            raise KeyProblem("sessions_required", "needs audit.sessions_dir")
        return self


class Upgrades(Section):
    keep_messages: bool = key(
        False, "keep every message an exec, cp or port-forward session relays in its flow (for "
        "mitmweb or `-w` recordings); off, only the last is kept, so memory stays bounded",
    )  # fmt: skip


class Connections(Section):
    # The kubelet's --streaming-connection-idle-timeout (exec, attach, port-forward) is 4 h;
    # kube-apiserver ends watches after 30-60 min (--min-request-timeout): mitmproxy's own
    # 10 min would cut a quiet watch or an idle shell first.
    idle_timeout_seconds: int = key(
        4 * 3600, "close client connections idle this long; mitmproxy's 10-minute default would "
        "cut quiet watches (the API server ends them after 30-60 min) and idle exec shells (the "
        "kubelet allows 4 h)", ge=1,
    )  # fmt: skip
    max_total: int = key(
        2000, "most client connections open at once; at the limit, the oldest connection on "
        "which no login has succeeded is closed to make room, and if every one has logged in "
        "the new one is closed at once", ge=1,
    )  # fmt: skip
    max_per_client: int = key(200, "most client connections from one address", ge=1)


class Limits(Section):
    # The body default is kube-apiserver's MaxRequestBodyBytes (3 MiB, k8s.io/apiserver/pkg/
    # server/config.go): the proxy refuses nothing the API server would take. The head default
    # is twice nginx's (4 x 8 KiB buffers) and what HTTP/2 allows here anyway (hpack: 64 KiB).
    # The largest WebSocket message the API server sends is one watch event, one object (etcd
    # takes 1.5 MiB, a Secret's JSON is a third larger); kubectl's exec, cp and port-forward
    # frames are at most 33 KiB: 4 MiB keeps both, and bounds what a session holds.
    max_request_header_kb: int = key(
        64, "longest request head (request line and headers); longer gets a 431 Status, and "
        "over HTTP/1 the connection is closed (`large_client_header_buffers`). Over HTTP/2 the "
        "header list is counted as the HTTP/2 spec does (name + value + 32 per field), and only "
        "that stream is refused; it is also the SETTINGS_MAX_HEADER_LIST_SIZE the proxy "
        "advertises, and a header block (HEADERS + CONTINUATION) still open past it closes the "
        "connection with GOAWAY `ENHANCE_YOUR_CALM` at once. Client frames are at most 16 KiB",
        ge=1,
    )  # fmt: skip
    max_request_body_mb: int = key(
        3, "largest request body; larger gets a 413 Status before anything reaches the API "
        "server, which refuses bodies over 3 MiB itself (`client_max_body_size`). Responses are "
        "not limited", ge=1,
    )  # fmt: skip
    max_websocket_message_mb: int = key(
        4, "largest WebSocket message (all its frames) an exec, attach, cp, port-forward or "
        'watch session may carry, either way; a larger one closes the session with 1009 "message '
        'too big", naming this key, as soon as it passes the limit. kubectl\'s frames are at '
        "most 33 KiB; the largest the API server sends is one watch event (one object). A "
        "session holds at most about this much per direction", ge=1,
    )  # fmt: skip
    # Slowloris: a TLS handshake and a request head must not take long (nginx's
    # ssl_handshake_timeout and client_header_timeout; kube-apiserver's ReadHeaderTimeout is
    # 32 s). Between requests, kube-apiserver's IdleTimeout (90 s).
    handshake_timeout_seconds: int = key(
        10, "a client connection that has not finished its TLS handshake this long after it was "
        "accepted is closed (nginx `ssl_handshake_timeout`)", ge=1,
    )  # fmt: skip
    request_header_timeout_seconds: int = key(
        10, "a client connection that has not sent a complete request head this long after its "
        "TLS handshake is closed (nginx `client_header_timeout`, Go `ReadHeaderTimeout`); also "
        "the wait for the next head on a connection where no login has succeeded", ge=1,
    )  # fmt: skip
    keepalive_timeout_seconds: int = key(
        90, "a connection that has logged in and has no request in flight is closed after this "
        "long (kube-apiserver's `IdleTimeout`; nginx `keepalive_timeout`); watches, `logs -f` "
        "and upgraded sessions (exec, port-forward) are exempt", ge=1,
    )  # fmt: skip
    # Netty allows 200 per 30 s; kubectl resets a stream only when a request is cancelled.
    http2_resets_per_minute: int = key(
        100, "HTTP/2 streams a client may reset on one connection, that many at once and "
        "refilled over a minute (rapid reset, CVE-2023-44487); past it the client gets GOAWAY "
        "`ENHANCE_YOUR_CALM` and the connection closes", ge=1,
    )  # fmt: skip
    # At least 64 KiB, HTTP/2's default window (a smaller one would refuse data sent before
    # the upstream saw it); at most 2 GiB - 1, the largest window.
    http2_stream_buffer_kb: int = key(
        1024, "what the proxy holds of one response for an HTTP/2 client that reads slowly: the "
        "HTTP/2 window it gives the API server per stream (data is acknowledged once the client "
        "took it), or, from an HTTP/1.1 API server, how much the client may have queued before "
        "that connection is no longer read", ge=64, le=_LARGEST_WINDOW_KB,
    )  # fmt: skip
    http2_connection_buffer_kb: int = key(
        8192, "the same for all the responses of one HTTP/2 client connection (the API server's "
        "connection window); at least `http2_stream_buffer_kb`. Throughput per stream from the "
        "API server is at most this window per round trip", ge=64, le=_LARGEST_WINDOW_KB,
    )  # fmt: skip

    @model_validator(mode="after")
    def _windows(self) -> Limits:
        if self.http2_connection_buffer_kb < self.http2_stream_buffer_kb:
            message = f"must be between http2_stream_buffer_kb and {_LARGEST_WINDOW_KB}"
            raise KeyProblem("http2_connection_buffer_kb", message)
        return self


class State(Section):
    redis: Redis | None = key(None)


class ConfigFile(Section):
    """kube-front-proxy's config.yaml (docs/configuration.md)."""

    listen: Listen = key(section=Listen)
    serving: Serving = key(doc="the TLS the proxy presents to users")
    upstream: Upstream = key(doc="the API servers")
    identity: Identity = key(section=Identity)
    authn: Authn = key(doc="how users log in")
    reload: Reload = key(section=Reload)
    metrics: Metrics = key(section=Metrics)
    audit: Audit | None = key(None)
    upgrades: Upgrades = key(section=Upgrades)
    connections: Connections = key(section=Connections)
    limits: Limits = key(section=Limits)
    state: State = key(section=State)

    @model_validator(mode="after")
    def _upstream_credentials(self) -> ConfigFile:
        """Exactly the credential of the identity mode: with both, the API server would take the
        certificate's identity (x509 comes before tokens) and the impersonation would be its."""
        upstream = self.upstream
        certificate = {"client_cert": upstream.client_cert, "client_key": upstream.client_key}
        if self.identity.mode == FRONT_PROXY:
            for name, value in certificate.items():
                if value is None:
                    message = "missing: the front-proxy client certificate is required"
                    raise KeyProblem(f"upstream.{name}", message)
            if upstream.token_file:
                message = f"only used with identity.mode {IMPERSONATE}"
                raise KeyProblem("upstream.token_file", message)
        else:
            if upstream.token_file is None:
                message = (f"missing: identity.mode {IMPERSONATE} needs the proxy's "
                           "service-account token")  # fmt: skip
                raise KeyProblem("upstream.token_file", message)
            for name, value in certificate.items():
                if value:
                    message = f"not used with identity.mode {IMPERSONATE}: remove it"
                    raise KeyProblem(f"upstream.{name}", message)
        return self
