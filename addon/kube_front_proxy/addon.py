"""The mitmproxy addon: thin hooks around the plain functions of the other modules.

Request path: requestheaders -> authenticate -> identity header lines -> upstream over mTLS.
Every hook that guards a request turns its own failure into an error response, because
mitmproxy forwards a request whose hook raised (fail open); this proxy must fail closed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

from mitmproxy import certs, connection, ctx, exceptions, http, tcp, tls
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy import layer, server_hooks
from mitmproxy.proxy.mode_specs import ProxyMode

from kube_front_proxy import seam
from kube_front_proxy.authn import token_endpoint
from kube_front_proxy.authn.login import Outcome
from kube_front_proxy.authn.peer_certificates import NO_CHAIN, PeerChain, PeerChains, proven_chain
from kube_front_proxy.authn.rate_budget import RateBudget
from kube_front_proxy.authn.take_credentials import SentCredentials, drop_trailers, take_credentials
from kube_front_proxy.client import tls_only
from kube_front_proxy.client.address import forwarded_for
from kube_front_proxy.client.connection_limits import ConnectionLimits
from kube_front_proxy.client.deadlines import ClientDeadlines, ClientTimeouts, close_expired
from kube_front_proxy.client.header_hygiene import malformed_head, to_origin_form
from kube_front_proxy.client.request_limits import head_too_large_status, http2_head_size
from kube_front_proxy.config.errors import ConfigError
from kube_front_proxy.config.reload import Reloader, restart_needed
from kube_front_proxy.config.runtime import Runtime, build_runtime
from kube_front_proxy.identity.headers import HeaderNames, asks_to_impersonate
from kube_front_proxy.identity.service_account import TokenInjector
from kube_front_proxy.identity.vouched import ledger
from kube_front_proxy.observe import no_injection, quoted_bytes
from kube_front_proxy.observe.audit import SESSION_TOKEN_ISSUED_ANNOTATION, AuditLog
from kube_front_proxy.observe.flow_labels import label
from kube_front_proxy.observe.metrics import Held, Metrics
from kube_front_proxy.observe.recorder import Recorder
from kube_front_proxy.seam import (
    body_after_login,
    close_connection,
    default_addons,
    dumper_lines,
    error_pages,
    h2_client_frames,
    h2_flow_control,
    h2_goaway,
    http1_framing,
    http1_trailers,
    lingering_close,
    listener,
    proxy_log,
    rapid_reset,
    request_size,
    upgraded_backpressure,
    upstream_failures,
    upstream_send,
    upstream_token,
    websocket_relay,
    withheld_response,
)
from kube_front_proxy.seam.close_connection import (
    close_client_connection,
    close_upstream_connection,
)
from kube_front_proxy.sessions.message_log import MessageLog, describe
from kube_front_proxy.sessions.tracking import Sessions
from kube_front_proxy.state.redis_link import Health
from kube_front_proxy.state.shared import retire
from kube_front_proxy.status import status_response, too_many_requests, unauthorized
from kube_front_proxy.streaming import forget_relayed, must_stream
from kube_front_proxy.upstream.pool import check_forever
from kube_front_proxy.upstream.response_timeout import UpstreamTimeouts
from kube_front_proxy.upstream.trust_gate import (
    CLIENT_MESSAGE,
    RETRY_SECONDS,
    TrustGate,
    check_once,
    check_until_passed,
)

logger = logging.getLogger("kube_front_proxy")

# kubectl --as and friends: the API server would check them against the proxy-given user, so
# they are refused unless identity.allow_client_impersonation says that is wanted.
IMPERSONATION_REFUSED = "impersonation (Impersonate-* headers) is not allowed through this proxy"


class K8sAuth:
    """Authenticating front proxy for kube-apiserver (requestheader authentication)."""

    def __init__(self) -> None:
        self.runtime: Runtime | None = None
        self._mode: ProxyMode | None = None
        self._reloader: asyncio.Task[None] | None = None
        self._health_checker: asyncio.Task[None] | None = None
        self._trust_checker: asyncio.Task[None] | None = None
        self.trust = TrustGate()
        # The audit log and the metrics outlive reloads: they need a restart to change.
        self.recorder = Recorder(None, None)
        self.sessions = Sessions(None)
        self.limits = ConnectionLimits(max_total=1, max_per_client=1)
        self.peer_chains = PeerChains()
        self.upstream_timeouts = UpstreamTimeouts(0, close_upstream_connection)
        self.message_log = MessageLog()
        self.deadlines = ClientDeadlines(ClientTimeouts())
        self._deadline_keeper: asyncio.Task[None] | None = None
        self._sharing: set[asyncio.Task[None]] = set()

    def load(self, loader: Loader) -> None:
        loader.add_option(
            name="k8s_auth_config",
            typespec=str,
            default="",
            help="Path to kube-front-proxy's config.yaml. Required.",
        )
        loader.add_option(
            name="k8s_auth_allow_mitmproxy_drift",
            typespec=bool,
            default=False,
            help="Run even though mitmproxy code that kube-front-proxy patches has changed "
            "(see `python -m kube_front_proxy.seam`).",
        )
        self.install_patches()

    def install_patches(self) -> None:
        """Install every patch of mitmproxy's private code (idempotent); they decide by
        seam.policy, which _configure_seam sets."""
        error_pages.install()
        request_size.install()
        upstream_token.install()
        http1_framing.install()
        body_after_login.install()
        http1_trailers.install()
        proxy_log.install()
        websocket_relay.install()
        upgraded_backpressure.install()
        dumper_lines.install()
        rapid_reset.install()
        h2_goaway.install()
        h2_client_frames.install()
        h2_flow_control.install()
        upstream_failures.install()
        withheld_response.install()
        upstream_send.install()
        close_connection.install()
        lingering_close.install()
        listener.install()
        default_addons.install()

    def configure(self, updated: set[str]) -> None:
        refused = default_addons.refused(ctx.options, updated)
        if refused:
            raise exceptions.OptionsError(
                f"kube-front-proxy: {', '.join(refused)}: not available behind this proxy "
                "(its mitmproxy addon is taken out: see seam/default_addons.py)"
            )
        if "k8s_auth_config" in updated:
            found = seam.drift()
            if found and not ctx.options.k8s_auth_allow_mitmproxy_drift:
                raise exceptions.OptionsError(seam.drift_error(found))
            for line in found:
                logger.warning("kube-front-proxy: running on changed mitmproxy code: %s", line)
            path = ctx.options.k8s_auth_config
            if not path:
                raise exceptions.OptionsError(
                    "kube-front-proxy: set the config file with --set k8s_auth_config=PATH"
                )
            try:
                runtime = build_runtime(Path(path), self.runtime)
            except ConfigError as e:
                raise exceptions.OptionsError(f"kube-front-proxy: {e}") from None
            if self.runtime is not None:
                # Changed at run time (mitmweb's options, the console's `set`): the same rules
                # as a reload, or mitmweb could re-point the listener and the API servers.
                refusal = restart_needed(self.runtime, runtime)
                if refusal:
                    raise exceptions.OptionsError(f"kube-front-proxy: {refusal}")
                self._use_runtime(runtime)
                return
            self.runtime = runtime
            if runtime.trust_check:
                self.trust.wait_for_check()
            self._mode = ProxyMode.parse(runtime.mode)
            self._start_recorder(runtime)
            self._set_limits(runtime)
            self._configure_seam(runtime)
            ctx.options.update(**runtime.mitmproxy_options)
            redis = runtime.settings.redis
            logger.info(
                "kube-front-proxy: %s users, forwarding to %s%s",
                len(runtime.login.identities),
                ", ".join(s.url for s in runtime.settings.upstream.servers),
                f"; lock-out counters shared through {redis.url}" if redis else "",
            )
        elif self.runtime and updated & set(self.runtime.mitmproxy_options):
            self._refuse_changes_to_owned_options(self.runtime)

    def _start_recorder(self, runtime: Runtime) -> None:
        self._stop_recorder()
        s = runtime.settings
        audit = AuditLog(s.audit.path, s.audit.max_bytes, s.audit.backups) if s.audit else None
        metrics = Metrics(s.metrics_per_user) if s.metrics_listen else None
        budget = (
            RateBudget(s.audit.refused_per_address_per_minute, s.audit.refused_per_minute)
            if s.audit
            else None
        )
        self.recorder = Recorder(audit, metrics, budget)
        self.sessions = Sessions.for_settings(
            s.audit, metrics.recording_failed if metrics else None, close_client_connection
        )
        if metrics:
            metrics.shared_health = self._shared_health
            metrics.held = self._held

    def _stop_recorder(self) -> None:
        self.sessions.close_all()
        if self.recorder.audit:
            self.recorder.audit.close()
        if self.recorder.metrics:
            self.recorder.metrics.stop()

    def _refuse_changes_to_owned_options(self, runtime: Runtime) -> None:
        owned = runtime.mitmproxy_options
        changed = sorted(k for k, v in owned.items() if getattr(ctx.options, k) != v)
        if changed:
            raise exceptions.OptionsError(
                f"kube-front-proxy: {', '.join(changed)} come(s) from k8s_auth_config "
                f"and cannot be changed; owned options: {', '.join(sorted(owned))}"
            )

    async def running(self) -> None:
        removed = default_addons.take_out(ctx.master.addons)
        logger.debug("kube-front-proxy: took out mitmproxy addons %s", ", ".join(removed))
        no_injection.take_out(ctx.master.commands)
        if self.runtime:
            # Before listening: the first request finds the verdict (upstream/trust_gate.py).
            await self._check_cluster_trust(self.runtime)
            await self._listen(self.runtime)
            self._serve_metrics(self.runtime)
            self._start_reloading(self.runtime)
            self._check_upstreams(self.runtime)
            self._share_revocations(self.runtime)
            expired = close_expired(self.deadlines, close_client_connection)
            self._deadline_keeper = asyncio.create_task(expired)

    async def _listen(self, runtime: Runtime) -> None:
        # mitmproxy starts its listeners before scripts load, so the default forward proxy may
        # have been opened; client_connected refuses it, and this replaces it with ours. A
        # failure (port in use) is logged as an error, which makes mitmproxy exit at start-up.
        # (seam/listener.py opens it, as seam.policy says.)
        if not await ctx.master.addons.get("proxyserver").setup_servers():
            s = runtime.settings
            logger.error(
                "kube-front-proxy: cannot listen on %s:%s (see the error above)",
                s.listen_host,
                s.listen_port,
            )

    def _serve_metrics(self, runtime: Runtime) -> None:
        listen = runtime.settings.metrics_listen
        if self.recorder.metrics and listen:
            self.recorder.metrics.not_ready = lambda: self.trust.refusal
            try:
                self.recorder.metrics.serve(*listen)
            except OSError as e:
                logger.error("kube-front-proxy: cannot serve metrics on %s:%s: %s", *listen, e)

    def _start_reloading(self, runtime: Runtime) -> None:
        interval = runtime.settings.reload_interval
        if interval > 0 and not self._reloader:
            reloader = Reloader(self._current_runtime, self._use_runtime, self._reload_refused)
            self._reloader = asyncio.create_task(reloader.run(interval))

    def _check_upstreams(self, runtime: Runtime) -> None:
        if self._health_checker:
            self._health_checker.cancel()
            self._health_checker = None
        # A lone server is always tried (upstream/pool.py): checking it would change nothing.
        if runtime.health_probe and len(runtime.router.pool.servers) > 1:
            interval = runtime.settings.upstream.health_check.interval
            checks = check_forever(runtime.router.pool, runtime.health_probe, interval)
            self._health_checker = asyncio.create_task(checks)

    async def _check_cluster_trust(self, runtime: Runtime) -> None:
        # Once now; until it passes, again in the background (upstream/trust_gate.py).
        if runtime.trust_check:
            servers = [s.address for s in runtime.router.pool.servers]
            if not await check_once(runtime.trust_check, servers, self.trust, self._strip_read):
                self._keep_checking_trust(runtime, first_delay=RETRY_SECONDS)

    def _keep_checking_trust(self, runtime: Runtime, first_delay: float = 0.0) -> None:
        if self._trust_checker:
            self._trust_checker.cancel()
            self._trust_checker = None
        if not runtime.trust_check:
            self.trust.open()
            return
        servers = [s.address for s in runtime.router.pool.servers]
        checks = check_until_passed(
            runtime.trust_check, servers, self.trust, self._strip_read, first_delay
        )
        self._trust_checker = asyncio.create_task(checks)

    def _strip_read(self, names: HeaderNames) -> None:
        if self.runtime:
            self.runtime.writer.strip_also(names)

    def _current_runtime(self) -> Runtime:
        assert self.runtime
        return self.runtime

    def _reload_refused(self) -> None:
        if self.recorder.metrics:
            self.recorder.metrics.reloads.labels("refused").inc()

    def _shared_health(self) -> Health | None:
        shared = self.runtime.shared if self.runtime else None
        return shared.link.health if shared else None

    def _held(self) -> list[Held]:
        """The bounded stores' sizes, for the metrics thread (the runtime's: a reload may
        replace them)."""
        held = [
            Held("client_connections", self.limits.open, self.limits.max_total),
            Held("lingering_close", lingering_close.lingering(), lingering_close.MAX_LINGERING),
            Held("session_message_log", len(self.message_log), self.message_log.max_sessions),
            Held("session_recordings", len(self.sessions)),
        ]
        if self.runtime:
            cache, lockout = self.runtime.login.cache, self.runtime.login.lockout
            held.append(Held("credential_cache", len(cache), cache.max_entries))
            for name, entries in lockout.tracked().items():
                held.append(Held(f"lockout_{name}", entries, lockout.policy.max_tracked))
        return held

    def _use_runtime(self, runtime: Runtime) -> None:
        retire(self.runtime.shared if self.runtime else None, runtime.shared)
        if self.trust.server_names:
            runtime.writer.strip_also(self.trust.server_names)
        previous, self.runtime = self.runtime, runtime
        if previous is None or previous.trust_inputs != runtime.trust_inputs:
            self._keep_checking_trust(runtime)
        self._set_limits(runtime)
        self._configure_seam(runtime)
        self._check_upstreams(runtime)
        self._share_revocations(runtime)
        if self.recorder.metrics:
            self.recorder.metrics.reloads.labels("ok").inc()

    def _share_revocations(self, runtime: Runtime) -> None:
        # The revocation file's token ids go to every process (state.redis), in the background.
        tokens = runtime.login.session_tokens
        if tokens and tokens.shared and tokens.revocation_list.token_ids:
            task = asyncio.create_task(tokens.share_revocations())
            self._sharing.add(task)
            task.add_done_callback(self._sharing.discard)

    def _configure_seam(self, runtime: Runtime) -> None:
        """What the patches of mitmproxy decide by, from this runtime (seam.Policy)."""
        s = runtime.settings
        token = TokenInjector()
        token.use(runtime.upstream_token, [(u.host, u.port) for u in s.upstream.servers])
        seam.configure(
            seam.Policy(
                max_request_head_bytes=s.max_request_head_bytes,
                max_request_body_bytes=s.max_request_body_bytes,
                max_websocket_message_bytes=s.max_websocket_message_bytes,
                http2_resets_per_minute=s.http2_resets_per_minute,
                http2_stream_buffer_bytes=s.http2_stream_buffer_bytes,
                http2_connection_buffer_bytes=s.http2_connection_buffer_bytes,
                message_log=self.message_log,
                retry=runtime.router,
                upstream_token=token,
                listener=self._mode,
                reuse_port=s.reuse_port,
            )
        )

    def _set_limits(self, runtime: Runtime) -> None:
        # Counts carry over: connections already open stay counted under the new limits.
        self.limits.max_total = runtime.settings.max_connections
        self.limits.max_per_client = runtime.settings.max_connections_per_client
        self.upstream_timeouts.seconds = runtime.settings.upstream.response_timeout
        timeouts = self.deadlines.timeouts
        timeouts.handshake = runtime.settings.handshake_timeout
        timeouts.request_header = runtime.settings.request_header_timeout
        timeouts.keepalive = runtime.settings.keepalive_timeout

    def done(self) -> None:
        if self._reloader:
            self._reloader.cancel()
            self._reloader = None
        if self._health_checker:
            self._health_checker.cancel()
            self._health_checker = None
        if self._trust_checker:
            self._trust_checker.cancel()
        if self._deadline_keeper:
            self._deadline_keeper.cancel()
        seam.configure(dataclasses.replace(seam.policy, retry=None))
        self._stop_recorder()

    def client_connected(self, client: connection.Client) -> None:
        if client.proxy_mode != self._mode:
            client.error = "refused: not the kube-front-proxy listener"
            logger.warning(
                "kube-front-proxy: refused a connection to %s on listener %s",
                client.sockname,
                client.proxy_mode.full_spec,
            )
            return
        address = client.peername[0]
        room = self.limits.make_room(address)
        if room:
            # The oldest connection without a login: it held a slot, a newcomer may use it.
            logger.warning(
                "kube-front-proxy: at %s connections: closed one from %s without a login",
                self.limits.max_total,
                close_client_connection(room),
            )
        refused = self.limits.admit(client.id, address)
        if refused:
            client.error = f"refused: {refused}"
            logger.warning("kube-front-proxy: refused a connection: %s", refused)
        else:
            self.deadlines.connected(client.id)

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        tls_only.first_layer(nextlayer, self._mode)

    def tls_start_client(self, data: tls.TlsData) -> None:
        if self.runtime and not data.is_dtls:
            data.ssl_conn = self.runtime.serving.connection(ctx.options.http2)

    def tls_established_client(self, data: tls.TlsData) -> None:
        assert data.ssl_conn is not None
        try:
            chain = proven_chain(data.ssl_conn)
        except Exception:
            logger.exception("kube-front-proxy: internal error reading a client certificate")
            chain = PeerChain(unreadable="internal error reading the client certificate chain")
        self.peer_chains.record(data.conn.id, chain)
        self.deadlines.handshake_done(data.conn.id)
        # Flows (mitmweb, -w files) show the chain that was proven, not mitmproxy's reading.
        data.conn.certificate_list = [certs.Cert(c) for c in chain.certificates]

    def tls_start_server(self, data: tls.TlsData) -> None:
        if not self.runtime or data.is_dtls:
            return
        server = data.conn
        assert isinstance(server, connection.Server)
        client_offers = data.context.client.alpn_offers or ()
        if self.runtime.upstream_token:
            # The token goes into HTTP/1 request heads only (seam/upstream_token.py).
            server.alpn_offers = (b"http/1.1",)
        elif not server.alpn_offers:
            server.alpn_offers = tuple(p for p in client_offers if ctx.options.http2 or p != b"h2")
        data.ssl_conn = self.runtime.upstream.connection(server.alpn_offers)

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        try:
            self.deadlines.request_started(flow.client_conn.id, flow.id)
            # Every flow, refused ones too: flows are shown in mitmweb and saved with -w.
            sent = take_credentials(flow.request)
            self._limit_http2_head(flow)
            if not flow.response:
                self._check_head(flow)
            if not flow.response:
                await self._authenticate(flow, sent)
            if not flow.response and self.sessions.enabled:
                self._open_session(flow)
            if not flow.response:
                self._route(flow)
                ledger.vouch(flow)
        except Exception:
            # Never forward a request we could not vouch for.
            logger.exception("kube-front-proxy: internal error; request refused")
            message = "internal error in the authenticating proxy"
            flow.response = status_response(500, message)
            self.recorder.internal_error(flow, message)
        if flow.response:
            # Refused: its body is not read (body_after_login), let alone streamed upstream
            # (mitmproxy cannot answer and stream at once, and drops the connection).
            flow.request.stream = False

    def _limit_http2_head(self, flow: http.HTTPFlow) -> None:
        # HTTP/1 heads are refused while they are read (seam/request_size.py); HTTP/2 ones here.
        request = flow.request
        if request.is_http2 and http2_head_size(request) > seam.policy.max_request_head_bytes:
            logger.info("kube-front-proxy: request refused: HTTP/2 head over the limit")
            flow.response = head_too_large_status()

    def _check_head(self, flow: http.HTTPFlow) -> None:
        refused = malformed_head(flow.request)
        if refused is None:
            to_origin_form(flow.request)
            return
        logger.info("kube-front-proxy: request refused: %s", refused)
        flow.response = status_response(400, refused)

    def request(self, flow: http.HTTPFlow) -> None:
        # Trailers come after the head; mitmproxy sends them on after this hook.
        drop_trailers(flow.request)
        if not flow.response:
            try:
                ledger.body_read(flow)
                self.upstream_timeouts.start(flow)
            except Exception:
                logger.exception("kube-front-proxy: internal error; request refused")
                flow.response = status_response(500, "internal error in the authenticating proxy")

    async def _authenticate(self, flow: http.HTTPFlow, sent: SentCredentials) -> None:
        runtime = self.runtime
        if runtime is None or flow.client_conn.proxy_mode != self._mode:
            flow.response = status_response(503, "the proxy is not configured")
            return
        if self.trust.refusal:
            flow.response = status_response(503, CLIENT_MESSAGE)
            return
        # Only a handshake proves a certificate, and a replay (mitmweb) was not sent by the
        # client over its connection: it logs in again, with what the request carries.
        chain = NO_CHAIN
        if runtime.login.client_certs and not flow.is_replay:
            chain = self.peer_chains.get(flow.client_conn.id)
        outcome = await runtime.login.authenticate(
            sent.authorization,
            flow.client_conn.peername[0],
            chain.certificates,
            unreadable_chain=chain.unreadable,
            websocket=sent.websocket,
        )
        label(flow, outcome)
        if self.recorder.enabled:
            self.recorder.login(flow, outcome)
        if outcome.identity is None:
            logger.info(
                "kube-front-proxy: login refused from %s: %s (user %r)%s",
                flow.client_conn.peername[0],
                outcome.reason,
                outcome.claimed_user,
                f" ({outcome.detail})" if outcome.detail else "",
            )
            if outcome.retry_after > 0:
                flow.response = too_many_requests(outcome.retry_after)
            else:
                flow.response = unauthorized(runtime.settings.realm)
            return
        self.limits.logged_in(flow.client_conn.id)
        if not runtime.settings.allow_client_impersonation and asks_to_impersonate(
            flow.request.headers.fields
        ):
            logger.info(
                "kube-front-proxy: %s sent Impersonate-* headers; refused", outcome.identity.user
            )
            flow.response = status_response(403, IMPERSONATION_REFUSED)
            return
        if token_endpoint.is_own_path(flow.request.path):
            await self._answer_own_path(flow, outcome, runtime)
            return
        lines = outcome.lines
        # Upstream is HTTP/2 too (tls_start_server), where mitmproxy would lower-case each
        # name itself and log a line for every one. (Impersonation mode: HTTP/1.1.)
        lowercase = flow.request.is_http2 and not runtime.upstream_token
        if lowercase:
            lines = tuple((name.lower(), value) for name, value in lines)
        runtime.writer.apply(flow.request.headers, lines)
        forwarded_for(flow.request.headers, flow.client_conn.peername[0], lowercase)

    def _open_session(self, flow: http.HTTPFlow) -> None:
        opened = self.sessions.request(flow)
        if opened.annotations:
            self.recorder.annotate(flow, opened.annotations)
        if opened.refusal:
            flow.response = status_response(503, opened.refusal)

    async def _answer_own_path(
        self, flow: http.HTTPFlow, outcome: Outcome, runtime: Runtime
    ) -> None:
        """The proxy's own API (authn/token_endpoint.py): answered here, never forwarded."""
        request = flow.request
        answer = await token_endpoint.answer(
            request.method, request.path, outcome, runtime.login.session_tokens
        )
        flow.response = answer.response
        issued = answer.issued
        if issued is None:
            return
        # The flow keeps the placeholder; only the bytes sent to the client hold the token.
        withheld_response.withheld.hold(flow, answer.placeholder, issued.token.encode())
        flow.metadata["k8s_session_token_issued"] = issued.token_id
        if self.recorder.enabled:
            self.recorder.annotate(flow, {SESSION_TOKEN_ISSUED_ANNOTATION: issued.token_id})
        logger.info(
            "kube-front-proxy: session token %s issued to %s (%s login) until %s",
            issued.token_id,
            outcome.claimed_user,
            outcome.authenticator,
            int(issued.expires_at),
        )

    def _route(self, flow: http.HTTPFlow) -> None:
        assert self.runtime
        self.runtime.router.route(flow)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self.upstream_timeouts.stop(flow)
        if not self._hide_upstream(flow, body=False):
            return
        if flow.response and must_stream(flow.response):
            flow.response.stream = True
        if self.recorder.enabled:
            self.recorder.response_started(flow, bool(flow.response and flow.response.stream))

    def _hide_upstream(self, flow: http.HTTPFlow, body: bool) -> bool:
        """Strip upstream addresses from the response; kill the flow if that fails."""
        if not self.runtime or not flow.response or not flow.server_conn.address:
            return True
        try:
            proxy = flow.client_conn.sockname[:2]
            if body:
                self.runtime.hider.body(flow.request, flow.response, proxy)
            else:
                self.runtime.router.answered(flow)
                self.runtime.hider.headers(flow.response, proxy)
        except Exception:
            logger.exception("kube-front-proxy: internal error; response withheld")
            flow.kill()
            return False
        return True

    def response(self, flow: http.HTTPFlow) -> None:
        self._request_done(flow)
        if self.sessions.enabled:
            self.sessions.response(flow)
        if not flow.response or not flow.response.stream:
            self._hide_upstream(flow, body=True)
        if self.recorder.enabled:
            self.recorder.response_done(flow)

    def _request_done(self, flow: http.HTTPFlow) -> None:
        client_id = flow.client_conn.id
        upgraded = bool(flow.response and flow.response.status_code == 101)
        logged_in = self.limits.has_logged_in(client_id)
        self.deadlines.request_done(client_id, flow.id, logged_in=logged_in, upgraded=upgraded)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        self._end_message_log(flow)
        if self.sessions.enabled:
            self.recorder.annotate(flow, self.sessions.end(flow.client_conn.id))
        if self.recorder.enabled:
            self.recorder.websocket_done(flow)

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        if self.sessions.enabled:
            self.sessions.tcp_start(flow)

    def tcp_end(self, flow: tcp.TCPFlow) -> None:
        self._end_message_log(flow)

    def tcp_error(self, flow: tcp.TCPFlow) -> None:
        self._end_message_log(flow)

    def _end_message_log(self, flow: http.HTTPFlow | tcp.TCPFlow) -> None:
        unsummarised, hidden = self.message_log.end(flow.id)
        if hidden:
            logger.info(
                "kube-front-proxy: %s ended; %s of its messages were not logged one by one "
                "(%s since the last summary)",
                describe(flow),
                hidden,
                unsummarised,
            )

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        if self.sessions.enabled:
            self.sessions.websocket_message(flow)
        if flow.websocket and not self._keep_upgraded_messages():
            forget_relayed(flow.websocket.messages)

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        if self.sessions.enabled:
            self.sessions.tcp_message(flow)
        if not self._keep_upgraded_messages():
            forget_relayed(flow.messages)

    def _keep_upgraded_messages(self) -> bool:
        return bool(self.runtime and self.runtime.settings.keep_upgraded_messages)

    def client_disconnected(self, client: connection.Client) -> None:
        self.limits.release(client.id, client.peername[0])
        self.deadlines.forget(client.id)
        self.peer_chains.forget(client.id)
        if self.sessions.enabled:
            self.recorder.annotate_upgraded(client.id, self.sessions.disconnected(client.id))
        if self.recorder.enabled:
            self.recorder.connection_closed(client)

    def server_connect_error(self, data: server_hooks.ServerConnectionHookData) -> None:
        # mitmproxy's HTTP layer keeps a server connection that failed to open, and answers
        # every later request for that address on the same client connection with its error,
        # for as long as the client stays: forgotten, the next request tries again.
        data.server.error = None

    def error(self, flow: http.HTTPFlow) -> None:
        if flow.error:
            # Before mitmdump prints it and the flow is saved (both come after this hook).
            flow.error.msg = quoted_bytes.withhold_bytes(flow.error.msg)
        self.upstream_timeouts.stop(flow)
        self._request_done(flow)
        if self.runtime:
            self.runtime.router.failed(flow)
        if self.sessions.enabled:
            self.sessions.failed(flow)
        if flow.error:
            logger.warning(
                "kube-front-proxy: %s %s failed: %s",
                flow.request.method,
                flow.request.path.split("?", 1)[0],
                flow.error.msg,
            )
        if self.recorder.enabled:
            self.recorder.failed(flow)
