"""Everything the request path needs, built from config.yaml; replaced whole on reload."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes

from kube_front_proxy.authn.client_certs import ClientCertAuthenticator
from kube_front_proxy.authn.credential_cache import CredentialCache
from kube_front_proxy.authn.htpasswd import Htpasswd
from kube_front_proxy.authn.lockout import Lockout, memory_store
from kube_front_proxy.authn.login import Login
from kube_front_proxy.authn.oidc import OidcAuthenticator
from kube_front_proxy.authn.session_tokens import SessionTokens
from kube_front_proxy.authn.static_tokens import TokenFile
from kube_front_proxy.authn.users import load_users
from kube_front_proxy.config.settings import FileRef, Settings, load_settings
from kube_front_proxy.identity import service_account
from kube_front_proxy.identity.headers import IMPERSONATION, IdentityHeaderWriter
from kube_front_proxy.state.shared import SharedState, shared_state
from kube_front_proxy.tls import ServingTLS, UpstreamTLS, read_certificates, read_key_pair
from kube_front_proxy.upstream.hiding import UpstreamHider
from kube_front_proxy.upstream.pool import Probe
from kube_front_proxy.upstream.readyz import readyz_probe
from kube_front_proxy.upstream.routing import Router, build_router
from kube_front_proxy.upstream.trust_check import TrustCheck, trust_check


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    login: Login
    writer: IdentityHeaderWriter
    serving: ServingTLS
    upstream: UpstreamTLS
    router: Router
    hider: UpstreamHider
    health_probe: Probe | None
    # identity.mode impersonate: the proxy's service-account token (never put in a flow)
    upstream_token: bytes | None = None
    # upstream.check_cluster_trust, front-proxy mode only (upstream/trust.py: nothing applies
    # to a proxy that presents no certificate)
    trust_check: TrustCheck | None = None
    # state.redis: what this process shares with the others (None: nothing)
    shared: SharedState | None = None

    @property
    def mode(self) -> str:
        """The one mitmproxy listener this proxy runs: reverse mode towards the API server.

        The first server is only mitmproxy's default: the addon picks the server per request.
        """
        s = self.settings
        return f"reverse:{s.upstream.servers[0].url}@{s.listen_host}:{s.listen_port}"

    @property
    def trust_inputs(self) -> tuple[object, ...]:
        """What the cluster trust check compares: a reload that changes it is checked again."""
        pair = self.upstream.pair
        chain = tuple(c.fingerprint(hashes.SHA256()) for c in pair.chain) if pair else ()
        return (self.trust_check is not None, self.settings.header_names, chain)

    @property
    def watched_files(self) -> list[Path]:
        """The files whose change means a reload: config.yaml and every file it names."""
        s = self.settings
        refs = [s.htpasswd, s.tokens, s.users, s.client_ca, s.serving_cert, s.serving_key,
                s.upstream.ca, s.upstream.client_cert, s.upstream.client_key,
                s.upstream.token_file]  # fmt: skip
        shared = (s.redis.ca, s.redis.password_file) if s.redis else ()
        tokens = s.session_tokens
        own = (tokens.signing_key_file, tokens.revocation_file) if tokens else ()
        return [s.file, *(ref.path for ref in refs if ref is not None),
                *(path for path in (*shared, *own) if path is not None)]  # fmt: skip

    @property
    def needs_restart_to_change(self) -> tuple[object, ...]:
        """What a reload cannot change: the listeners (proxy and metrics), the audit log."""
        s = self.settings
        return (self.mitmproxy_options, s.reuse_port, s.metrics_listen, s.metrics_per_user, s.audit)

    @property
    def mitmproxy_options(self) -> dict[str, object]:
        """The mitmproxy options this configuration decides; the addon owns them."""
        return {
            "mode": [self.mode],
            # Only shown (mitmweb's status bar): the mode above carries its own address.
            "listen_host": self.settings.listen_host,
            "listen_port": self.settings.listen_port,
            # Connect upstream when a request arrives, so that a failure becomes a 502 for
            # that request instead of a silently closed client connection.
            "connection_strategy": "lazy",
            "keep_host_header": False,
            # mitmproxy kills clients from public addresses so that a forward proxy is not
            # left open to the internet; every request here must log in first.
            "block_global": not self.settings.allow_public_clients,
            # SPDY/3.1 upgrades (exec and port-forward with WebSockets off, older kubectl,
            # client-go's SPDY executor) are relayed as raw TCP only with this on.
            "rawtcp": True,
            # Idle client connections (quiet watches, idle exec shells) are closed after this.
            "tcp_timeout": self.settings.idle_timeout,
            # Bodies of known length above this are passed on as they arrive too, so a 200 MB
            # list does not sit in the proxy's memory (streaming.must_stream covers the rest).
            "stream_large_bodies": "1m",
            # Refuse requests framed ambiguously (both Content-Length and chunked, invalid
            # header names or values): they are how requests are smuggled past a proxy.
            "validate_inbound_headers": True,
            # request_limits bounds request bodies; this would also cut long responses.
            "body_size_limit": None,
            # Every connection goes through the HTTP layer, where logins are checked: raw TCP
            # relaying or TLS passthrough would carry a client's bytes past that check (and,
            # for raw TCP, over the front-proxy certificate's connection).
            "tcp_hosts": [],
            "udp_hosts": [],
            "ignore_hosts": [],
            "allow_hosts": [],
        }


def build_runtime(config_file: Path, previous: Runtime | None = None) -> Runtime:
    """Load config.yaml and every file it names; raises ConfigError: every problem of
    config.yaml's keys at once, then the first of the files it names.

    On reload, the remembered logins and failure counts of the previous runtime carry over
    when their settings did not change: a remembered login is tied to its htpasswd hash, so
    a changed password voids it anyway.
    """
    settings = load_settings(config_file)
    up = settings.upstream
    token = _read_token(up.token_file) if up.token_file else None
    if token:
        writer = IdentityHeaderWriter(IMPERSONATION, service_account.CREDENTIAL_LINE)
    else:
        writer = IdentityHeaderWriter(settings.header_names)
    users = load_users(settings.users, settings.header_names)
    old = previous.login if previous else None
    cache = CredentialCache(settings.cache_ttl, settings.cache_max_entries)
    if old and (old.cache.ttl, old.cache.max_entries) == (cache.ttl, cache.max_entries):
        cache = old.cache
    shared = shared_state(settings.redis, previous.shared if previous else None)
    lockout = None
    if old and old.lockout.policy == settings.lockout and previous and previous.shared is shared:
        lockout = old.lockout
    elif shared:
        store = shared.counter_store(memory_store(settings.lockout))
        lockout = Lockout(settings.lockout, store, secret=shared.secret)
    client_cas = read_certificates(settings.client_ca) if settings.client_ca else ()
    login = Login(
        users=users,
        writer=writer,
        cache=cache,
        lockout=lockout or Lockout(settings.lockout),
        order=settings.authn_order,
        htpasswd=Htpasswd(settings.htpasswd) if settings.htpasswd else None,
        tokens=TokenFile(settings.tokens, settings.token_hashes, bool(settings.header_names.group))
        if settings.tokens
        else None,
        client_certs=ClientCertAuthenticator(client_cas) if client_cas else None,
        oidc=_oidc(settings, old),
        session_tokens=SessionTokens(
            settings.session_tokens, shared.revocations if shared else None
        )
        if settings.session_tokens
        else None,
    )
    serving = ServingTLS(read_key_pair(settings.serving_cert, settings.serving_key), client_cas)
    pair = None
    if up.client_cert and up.client_key:
        pair = read_key_pair(up.client_cert, up.client_key)
    upstream = UpstreamTLS(up, read_certificates(up.ca), pair)
    router = build_router(up, previous.router if previous else None)
    hider = UpstreamHider([s.address for s in router.pool.servers])
    probe = (
        readyz_probe(upstream, up.health_check, writer, token) if up.health_check.interval else None
    )
    check = (
        trust_check(upstream, settings.header_names, writer, pair.chain)
        if up.check_cluster_trust and pair
        else None
    )
    return Runtime(
        settings, login, writer, serving, upstream, router, hider, probe, token, check, shared
    )


def _oidc(settings: Settings, old: Login | None) -> OidcAuthenticator | None:
    if settings.oidc is None:
        return None
    if old and old.oidc and old.oidc.settings == settings.oidc:
        return old.oidc  # keeps the issuer's keys: no fetch because another file changed
    return OidcAuthenticator(settings.oidc)


def _read_token(ref: FileRef) -> bytes:
    try:
        data = ref.path.read_bytes()
    except OSError as e:
        raise ref.error(f"cannot read: {e.strerror or e}") from None
    token = service_account.read_token(data)
    if token is None:
        raise ref.error("not a token: empty, or characters a header cannot carry")
    return token
