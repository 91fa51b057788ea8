"""The emulated kube-apiserver's TLS server.

TLS follows `k8s.io/apiserver pkg/server/secure_serving.go` and
`pkg/server/dynamiccertificates/tlsconfig.go`: minimum TLS 1.2, `ClientAuth = RequestClientCert`
(a client certificate is requested, any certificate or none is accepted in the handshake, and
verification happens per request in the authenticators), and the acceptable client CA names are
the union of --client-ca-file and --requestheader-client-ca-file (`pkg/server/config.go`
`AuthenticationInfo.ApplyClientCert`). Python's `ssl` module cannot accept an unverifiable
certificate without failing the handshake, hence pyOpenSSL with a verify callback that always
agrees.

ALPN: `h2` then `http/1.1`, the server's order winning (Go's `crypto/tls`), or `http/1.1` only
with `disable_http2` (`--disable-http2`; kube-apiserver has no such flag, Go programs turn it off
with `GODEBUG=http2server=0`). HTTP/2 connections are served by `http2.py`.

One thread per connection, HTTP/1.1 keep-alive. Each request goes through the filters in
kube-apiserver's order (`pkg/server/config.go` `DefaultBuildHandlerChain`): authentication
(`authn.py`), impersonation (`impersonation.py`), then authorization and the handlers (`api.py`,
with the authorizers of `authz.py` / `abac.py`). Optional delays before each response and a
failing /readyz come from `faults.py`. Upgrades (exec, port-forward) are authenticated and logged
like any request; the handler then takes the connection over (`tunnel.py`).

Connection-level behaviour of kube-apiserver over HTTP/2 (`http2.py` sends the GOAWAYs):

- `--goaway-chance` (`pkg/server/filters/goaway.go`): each HTTP/2 request, with that probability,
  gets `Connection: close` on its response, which makes Go's HTTP/2 server send GOAWAY;
- unauthenticated HTTP/2 requests (a 401, or success as `system:anonymous`) get it too
  (`pkg/endpoints/filters/authentication.go`, UnauthenticatedHTTP2DOSMitigation, on since 1.29);
- `shutdown()` (SIGTERM on the command line) is `genericapiserver.go` `RunWithContext` with
  kube-apiserver's defaults: /readyz fails at once, requests are served normally for
  `--shutdown-delay-duration`, then the listener closes, HTTP/2 connections get GOAWAY and
  close once their streams are done, idle HTTP/1.1 connections close and busy ones after their
  response (`http.Server.Shutdown`), requests that still arrive get WithWaitGroup's 503
  `apiserver is shutting down` with `Retry-After: 1`; whatever is still open after
  `--request-timeout` (ShutdownTimeout; watches) is cut as the process exits.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import io
import logging
import random
import select
import selectors
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from OpenSSL import SSL

from . import abac, authz, clustertrust, goquote, http2, http11, impersonation, status, x509verify
from .api import API, Hold, Request, Response, request_info, status_response, unauthorized_response
from .authn import (
    ANONYMOUS_USER,
    AuthenticationChain,
    AuthenticationResult,
    build_chain,
    load_token_file,
)
from .faults import Faults
from .requestheader import RequestHeaderAuthenticator, UserInfo
from .requestlog import (
    AuthenticationRecord,
    RequestLog,
    RequestLogRecord,
    UserRecord,
    source_ips,
)
from .tunnel import TLSRaw, Tunnel

log = logging.getLogger("kube-apiserver-emulator")

# kubeadm's values; kube-apiserver itself has no defaults for these flags.
DEFAULT_USERNAME_HEADERS = ("X-Remote-User",)
DEFAULT_GROUP_HEADERS = ("X-Remote-Group",)
DEFAULT_EXTRA_HEADERS_PREFIX = ("X-Remote-Extra-",)
DEFAULT_UID_HEADERS = ("X-Remote-Uid",)
UNAUTHENTICATED_GROUP = "system:unauthenticated"
# BasicLongRunningRequestCheck as kube-apiserver configures it.
LONG_RUNNING_VERBS = frozenset({"watch", "proxy"})
LONG_RUNNING_SUBRESOURCES = frozenset({"attach", "exec", "proxy", "log", "portforward"})
# pathPrefixesExemptFromRetryAfter (with_retry_after.go)
EXEMPT_FROM_RETRY_AFTER = ("/readyz", "/livez", "/healthz", "/metrics")


@dataclass(frozen=True)
class EmulatorConfig:
    """The kube-apiserver flags the emulator understands (same names, snake_case)."""

    tls_cert_file: Path
    tls_private_key_file: Path
    bind_address: str = "127.0.0.1"
    secure_port: int = 6443  # 0: pick a free port
    client_ca_file: Path | None = None
    requestheader_client_ca_file: Path | None = None
    requestheader_allowed_names: tuple[str, ...] = ()
    requestheader_username_headers: tuple[str, ...] = DEFAULT_USERNAME_HEADERS
    requestheader_group_headers: tuple[str, ...] = DEFAULT_GROUP_HEADERS
    requestheader_extra_headers_prefix: tuple[str, ...] = DEFAULT_EXTRA_HEADERS_PREFIX
    requestheader_uid_headers: tuple[str, ...] = DEFAULT_UID_HEADERS
    anonymous_auth: bool = True
    token_auth_file: Path | None = None
    # The emulator's default is its RBAC stand-in (kubeadm runs Node,RBAC); kube-apiserver's own
    # default is AlwaysAllow.
    authorization_mode: tuple[str, ...] = ("RBAC",)
    authorization_policy_file: Path | None = None
    request_log: Path | None = None
    response_delay: float = 0.0
    response_delay_file: Path | None = None
    not_ready_file: Path | None = None
    disable_http2: bool = False
    # Test control, not Kubernetes: seconds between the MODIFIED events of a pod watch (0: none).
    watch_event_interval: float = 0.0
    # Test control, not Kubernetes: bytes of 16 KiB lines added to every pod's log (0: none).
    chatty_log_bytes: int = 0
    goaway_chance: float = 0.0
    shutdown_delay_duration: float = 0.0
    # secure_serving.go's IdleTimeout, hard-coded there (90 s); a test control here.
    idle_timeout: float = 90.0
    # Only its role in a graceful shutdown (ShutdownTimeout) is emulated.
    request_timeout: float = 60.0

    def __post_init__(self) -> None:
        # ServerRunOptions.Validate
        if not 0 <= self.goaway_chance <= 0.02:
            raise ValueError("--goaway-chance can not be less than 0 or greater than 0.02")
        if self.shutdown_delay_duration < 0:
            raise ValueError("--shutdown-delay-duration can not be negative value")
        if self.request_timeout < 0:
            raise ValueError("--request-timeout can not be negative value")

    @property
    def faults(self) -> Faults:
        return Faults(self.response_delay, self.response_delay_file, self.not_ready_file)


class Address(NamedTuple):
    host: str
    port: int


def build_authentication(config: EmulatorConfig) -> AuthenticationChain:
    """The authenticator chain kube-apiserver would build from these flags."""
    requestheader_ca = None
    requestheader = None
    if config.requestheader_client_ca_file is not None:
        requestheader_ca = x509verify.CertPool.from_file(config.requestheader_client_ca_file)
        requestheader = RequestHeaderAuthenticator.new(
            config.requestheader_username_headers,
            config.requestheader_uid_headers,
            config.requestheader_group_headers,
            config.requestheader_extra_headers_prefix,
        )
    client_ca = (
        x509verify.CertPool.from_file(config.client_ca_file)
        if config.client_ca_file is not None
        else None
    )
    tokens = load_token_file(config.token_auth_file) if config.token_auth_file else None
    return build_chain(
        requestheader_client_ca=requestheader_ca,
        requestheader_allowed_names=config.requestheader_allowed_names,
        requestheader=requestheader,
        client_ca=client_ca,
        tokens=tokens,
        anonymous=config.anonymous_auth,
    )


def build_authorization(config: EmulatorConfig) -> authz.Authorizer:
    """The chain kube-apiserver builds for `--authorization-mode` and `--authorization-policy-file`.

    Validation follows `k8s.io/kubernetes pkg/kubeapiserver/options/authorization.go` `Validate`;
    the chain, `pkg/kubeapiserver/authorizer/reload.go` `newForConfig`.
    """
    modes, policy_file = config.authorization_mode, config.authorization_policy_file
    if not modes:
        raise ValueError("at least one authorization-mode must be passed")
    for mode in modes:
        if mode not in authz.MODES:
            raise ValueError(f"authorization-mode {goquote.quote(mode)} is not a valid mode")
    if len(set(modes)) != len(modes):
        quoted = " ".join(goquote.quote(m) for m in modes)  # Go's %q of a []string
        raise ValueError(f"authorization-mode [{quoted}] has mode specified more than once")
    if "ABAC" in modes and policy_file is None:
        raise ValueError("authorization-mode ABAC's authorization policy file not passed")
    if "ABAC" not in modes and policy_file is not None:
        raise ValueError("cannot specify --authorization-policy-file without mode ABAC")
    chain: list[authz.Authorizer] = [authz.PrivilegedGroups(authz.SUPERUSER_GROUP)]
    for mode in modes:
        if mode == "AlwaysAllow":
            chain.append(authz.AlwaysAllow())
        elif mode == "AlwaysDeny":
            chain.append(authz.AlwaysDeny())
        elif mode == "ABAC":
            assert policy_file is not None
            chain.append(abac.PolicyList.from_file(policy_file))
        else:
            chain.append(authz.BootstrapRBAC())
    return authz.Union(chain)


@dataclass(eq=False)  # identity semantics: kept in a set of live connections
class _ConnState:
    sock: socket.socket
    remote: str
    conn: SSL.Connection | None = None
    peer_chain: list[x509.Certificate] = field(default_factory=list)
    alpn: str | None = None
    tls_version: str | None = None
    h2: http2.Http2Connection | None = None
    # HTTP/1.1: from a request's head to the end of its response (for good once hijacked)
    busy: bool = False
    idle_since: float = field(default_factory=time.monotonic)


class EmulatorServer:
    """An emulated kube-apiserver; run in-process with `start()` / `stop()` or as a context."""

    def __init__(self, config: EmulatorConfig, *, api: API | None = None) -> None:
        self.config = config
        self.authentication = build_authentication(config)
        self.authorizer = build_authorization(config)
        self.faults = config.faults
        self.request_log = RequestLog(config.request_log)
        self._api = api
        self._ctx = self._tls_context()
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self._shutdown_initiated = threading.Event()  # /readyz fails
        self._not_accepting = threading.Event()  # after --shutdown-delay-duration
        self._threads: list[threading.Thread] = []
        self._conns: set[_ConnState] = set()
        self._lock = threading.Lock()
        self.address: Address | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Address:
        """Bind, listen and serve in background threads; returns the bound host and port."""
        family = socket.AF_INET6 if ":" in self.config.bind_address else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.config.bind_address, self.config.secure_port))
        listener.listen(128)
        self._listener = listener
        host, port = listener.getsockname()[:2]
        self.address = Address(host, port)
        if self._api is None:
            self._api = API(
                server_address=f"{host}:{port}",
                configmaps={
                    (clustertrust.NAMESPACE, clustertrust.NAME): clustertrust.configmap_data(
                        self.config
                    )
                },
                authorizer=self.authorizer,
                ready=lambda: self.faults.ready() and not self._shutdown_initiated.is_set(),
                watch_event_interval=self.config.watch_event_interval,
                chatty_log_bytes=self.config.chatty_log_bytes,
            )
        thread = threading.Thread(target=self._accept_loop, name="emulator-accept", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self.address

    def stop(self) -> None:
        """Stop accepting, cut every open connection, wait briefly for the threads."""
        self._stopping.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for state in conns:
            with contextlib.suppress(OSError):
                state.sock.shutdown(socket.SHUT_RDWR)
        for thread in list(self._threads):
            if thread is not threading.current_thread():
                thread.join(timeout=2)
        self.request_log.close()

    def shutdown(self) -> None:
        """Graceful termination, as kube-apiserver does it on SIGTERM (see the module doc);
        returns once every connection is closed, at most --request-timeout after the delay."""
        self._shutdown_initiated.set()
        if self._stopping.wait(self.config.shutdown_delay_duration):
            return
        self._not_accepting.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for state in conns:
            if state.h2 is not None:
                state.h2.shutdown()
            elif not state.busy:
                with contextlib.suppress(OSError):
                    state.sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + self.config.request_timeout
        while time.monotonic() < deadline and not self._stopping.is_set():
            with self._lock:
                if not self._conns:
                    break
            time.sleep(0.05)
        self.stop()

    def __enter__(self) -> EmulatorServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        assert self.address is not None, "not started"
        return self.address.host

    @property
    def port(self) -> int:
        assert self.address is not None, "not started"
        return self.address.port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    def records(self) -> list[RequestLogRecord]:
        """The request log so far (in memory, whether or not a log file is configured)."""
        return self.request_log.records()

    # -- TLS ---------------------------------------------------------------------------------

    def _tls_context(self) -> SSL.Context:
        cfg = self.config
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        try:
            ctx.use_certificate_chain_file(str(cfg.tls_cert_file))
            ctx.use_privatekey_file(str(cfg.tls_private_key_file))
            ctx.check_privatekey()
        except SSL.Error as e:
            raise ValueError(
                f"cannot load serving certificate {cfg.tls_cert_file} with key"
                f" {cfg.tls_private_key_file}: {e}"
            ) from e
        # RequestClientCert: ask, never refuse. Verification is the authenticators' job.
        ctx.set_verify(SSL.VERIFY_PEER, lambda *_: True)
        for ca_file in (cfg.client_ca_file, cfg.requestheader_client_ca_file):
            if ca_file is not None:
                for ca in x509verify.parse_certs_pem(Path(ca_file).read_bytes()):
                    ctx.add_client_ca(ca)
        # Without resumption every connection carries its peer chain; OpenSSL does not keep the
        # intermediates across resumed sessions.
        ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
        ctx.set_options(SSL.OP_NO_TICKET)
        ctx.set_session_id(b"kube-apiserver-emulator")
        ctx.set_alpn_select_callback(self._select_alpn)
        return ctx

    def _select_alpn(self, _conn: SSL.Connection, offered: list[bytes]) -> bytes:
        protocols = (b"http/1.1",) if self.config.disable_http2 else (b"h2", b"http/1.1")
        for protocol in protocols:
            if protocol in offered:
                return protocol
        return SSL.NO_OVERLAPPING_PROTOCOLS  # type: ignore[return-value]

    # -- connections -------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        with selectors.DefaultSelector() as sel:
            try:
                sel.register(self._listener, selectors.EVENT_READ)
            except (OSError, ValueError):
                return  # stopped (the listener closed) before this thread ran
            while not self._stopping.is_set():
                try:
                    if not sel.select(timeout=0.1):
                        self._close_idle_http11()
                        continue
                    sock, addr = self._listener.accept()
                except OSError:
                    if self._stopping.is_set() or self._not_accepting.is_set():
                        return
                    continue
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                state = _ConnState(sock=sock, remote=f"{addr[0]}:{addr[1]}")
                with self._lock:
                    self._conns.add(state)
                    self._threads = [t for t in self._threads if t.is_alive()]
                    thread = threading.Thread(
                        target=self._serve_connection,
                        args=(state,),
                        name=f"emulator-conn-{state.remote}",
                        daemon=True,
                    )
                    self._threads.append(thread)
                thread.start()

    def _close_idle_http11(self) -> None:
        """Go's IdleTimeout for HTTP/1.1: a kept-alive connection whose next request has not
        come within it is closed (HTTP/2 connections get GOAWAY instead: http2.py)."""
        deadline = time.monotonic() - self.config.idle_timeout
        with self._lock:
            idle = [
                s
                for s in self._conns
                if s.alpn != "h2" and s.tls_version and not s.busy and s.idle_since < deadline
            ]
        for state in idle:
            with contextlib.suppress(OSError):
                state.sock.shutdown(socket.SHUT_RDWR)

    def _serve_connection(self, state: _ConnState) -> None:
        try:
            conn = SSL.Connection(self._ctx, state.sock)
            conn.set_accept_state()
            state.conn = conn
            try:
                conn.do_handshake()
            except (SSL.Error, OSError) as e:
                log.debug("TLS handshake with %s failed: %s", state.remote, e)
                return
            state.peer_chain = _peer_chain(conn)
            alpn = conn.get_alpn_proto_negotiated()
            state.alpn = alpn.decode() if alpn else None
            state.tls_version = conn.get_protocol_version_name()
            if state.alpn == "h2":
                state.h2 = http2.Http2Connection(
                    conn,
                    state.sock,
                    lambda req: self.handle(req, state),
                    self.faults.delay,
                    self._stopping,
                    state.remote,
                    self.config.idle_timeout,
                )
                if self._not_accepting.is_set():
                    state.h2.shutdown()
                state.h2.serve()
            else:
                self._serve_http11(state, conn)
        except Exception:  # one broken connection must not take the server down
            if not self._stopping.is_set():
                log.exception("connection from %s failed", state.remote)
        finally:
            _close(state)
            with self._lock:
                self._conns.discard(state)

    def _serve_http11(self, state: _ConnState, conn: SSL.Connection) -> None:
        raw = TLSRaw(conn)
        reader = io.BufferedReader(raw, 65536)
        while not self._stopping.is_set():
            try:
                req = http11.read_request(reader)
                if req is None:
                    return
                state.busy = True
                if (req.header("Expect") or "").lower() == "100-continue":
                    conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                req.body = http11.read_body(reader, req)
            except http11.BadRequest as e:
                _send(conn, http11.bad_request_response(e))
                return
            except (http11.ClientGone, SSL.Error, OSError):
                return
            response = self.handle(req, state)
            # Go's doKeepAlives(): no keep-alive once Server.Shutdown has begun.
            keep_alive = http11.wants_keep_alive(req) and not self._not_accepting.is_set()
            delay = self.faults.delay()
            if delay and self._stopping.wait(delay):
                return
            if response.hijack is not None:
                # Like Go's Hijack(): the handler owns the connection, which is never reused.
                if _send(conn, response.hijack.head) and response.hijack.run is not None:
                    response.hijack.run(Tunnel(conn, state.sock, reader, raw, self._stopping))
                return
            if not self._write_response(state, conn, req, response, keep_alive):
                return
            state.busy, state.idle_since = False, time.monotonic()
            if not keep_alive:
                return

    # -- requests ----------------------------------------------------------------------------

    def handle(self, req: Request, state: _ConnState | None = None) -> Response:
        """Authenticate, dispatch, add the headers every apiserver response has, and log."""
        peer_chain: Sequence[x509.Certificate] = state.peer_chain if state else ()
        http2_request = req.http_version == "HTTP/2.0"
        # WithProbabilisticGoaway decides before the request is served, whatever its outcome.
        goaway = http2_request and random.random() < self.config.goaway_chance
        acting_as: UserInfo | None = None
        if self._not_accepting.is_set() and self._rejected_in_shutdown(req):
            # WithWaitGroup runs before authentication: the log shows no user.
            result = AuthenticationResult(None, None, None, req.headers)
            response = status_response(
                status.service_unavailable("apiserver is shutting down"), nosniff=True
            )
            response.headers.insert(0, ("Retry-After", "1"))
        else:
            result = self.authentication.authenticate(req.headers, peer_chain, req.path)
            if result.user is None:
                response = unauthorized_response()
                goaway = goaway or http2_request
            else:
                goaway = goaway or (http2_request and _anonymous(result.user))
                outcome = impersonation.impersonate(
                    result.user, result.headers, self.authorizer, req.target
                )
                acting_as = outcome.user
                if outcome.refusal is not None:
                    response = outcome.refusal
                else:
                    assert self._api is not None
                    inner = Request(
                        req.method, req.target, req.http_version, outcome.headers, req.body
                    )
                    response = self._api.handle(inner, acting_as or result.user)
        # WithAuditInit and WithCacheControl (k8s.io/apiserver pkg/server/config.go handler chain)
        # set these on the ResponseWriter; a hijacking handler writes its own head without them.
        names = {n.lower() for n, _ in response.headers}
        if "audit-id" not in names:
            response.headers.append(("Audit-Id", str(uuid.uuid4())))
        if "cache-control" not in names:
            response.headers.append(("Cache-Control", "no-cache, private"))
        if goaway:
            response.headers.append(("Connection", "close"))
        self.request_log.append(_record(req, state, result, acting_as, response.status))
        return response

    @staticmethod
    def _rejected_in_shutdown(req: Request) -> bool:
        """WithWaitGroup after Wait: anything but long-running and health-check requests."""
        if req.path.startswith(EXEMPT_FROM_RETRY_AFTER):
            return False
        info = request_info(req.method, req.path, req.query)
        return not (
            info.verb in LONG_RUNNING_VERBS or info.subresource in LONG_RUNNING_SUBRESOURCES
        )

    def _write_response(
        self,
        state: _ConnState,
        conn: SSL.Connection,
        req: Request,
        response: Response,
        keep_alive: bool,
    ) -> bool:
        """Send one response; False when the connection must not be reused."""
        head_only = req.method == "HEAD"
        http10 = req.http_version == "HTTP/1.0"
        if response.stream is None:
            body = response.body
            # A Content-Length the handler set is Go's to keep (a proxied backend's).
            declared = response.header("Content-Length") is not None
            chunked = (
                not declared
                and len(body) > http11.CHUNKING_THRESHOLD
                and not http10
                and not head_only
            )
            head = http11.response_head(
                response.status,
                response.headers,
                content_length=None if chunked or declared else len(body),
                chunked=chunked,
                close=not keep_alive,
            )
            if head_only:
                payload = head
            elif chunked:
                pieces = [
                    http11.chunk(body[i : i + http11.CHUNKING_THRESHOLD])
                    for i in range(0, len(body), http11.CHUNKING_THRESHOLD)
                ]
                payload = head + b"".join(pieces) + http11.LAST_CHUNK
            else:
                payload = head + body
            return _send(conn, payload)
        # Streams: chunked on HTTP/1.1; HTTP/1.0 has no framing, so the close ends the body.
        head = http11.response_head(
            response.status,
            response.headers,
            content_length=None,
            chunked=not http10,
            close=not keep_alive or http10,
        )
        if not _send(conn, head + (self._frame(response.body, http10) if response.body else b"")):
            return False
        for item in response.stream:
            if isinstance(item, Hold):
                if not self._hold(state, item.seconds):
                    return False
                continue
            if item and not _send(conn, self._frame(item, http10)):
                return False
        if http10:
            return False
        return _send(conn, http11.LAST_CHUNK)

    @staticmethod
    def _frame(data: bytes, http10: bool) -> bytes:
        return data if http10 else http11.chunk(data)

    def _hold(self, state: _ConnState, seconds: float | None) -> bool:
        """Keep a streaming response open; False if the client went away or we are stopping."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while not self._stopping.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return True
            try:
                readable, _, _ = select.select([state.sock], [], [], 0.1)
            except (OSError, ValueError):
                return False
            if readable:
                # Mid-response a client only sends something to close (or to break HTTP/1.1
                # ordering); either way this connection is done.
                return False
        return False


def _anonymous(user: UserInfo) -> bool:
    """filters/authentication.go isAnonymousUser."""
    return user.name == ANONYMOUS_USER or UNAUTHENTICATED_GROUP in user.groups


def _peer_chain(conn: SSL.Connection) -> list[x509.Certificate]:
    """`tls.ConnectionState.PeerCertificates`: leaf first, then what the client sent with it."""
    leaf = conn.get_peer_certificate(as_cryptography=True)
    if leaf is None:
        return []
    rest = conn.get_peer_cert_chain(as_cryptography=True) or []
    # On the server side OpenSSL leaves the leaf out of the chain; guard anyway.
    if rest and rest[0] == leaf:
        rest = rest[1:]
    return [leaf, *rest]


def _send(conn: SSL.Connection, data: bytes) -> bool:
    try:
        conn.sendall(data)
    except (SSL.Error, OSError):
        return False
    return True


def _close(state: _ConnState) -> None:
    if state.conn is not None:
        with contextlib.suppress(SSL.Error, OSError):
            state.conn.shutdown()
    with contextlib.suppress(OSError):
        state.sock.close()


def _user_record(u: UserInfo | None) -> UserRecord | None:
    if u is None:
        return None
    return {
        "username": u.name,
        "uid": u.uid,
        "groups": list(u.groups),
        "extra": {k: list(v) for k, v in sorted(u.extra.items())},
    }


def _record(
    req: Request,
    state: _ConnState | None,
    result: AuthenticationResult,
    acting_as: UserInfo | None,
    status: int,
) -> RequestLogRecord:
    peer = state.peer_chain if state else []
    auth: AuthenticationRecord = {
        "authenticated": result.user is not None,
        "authenticator": result.authenticator,
        "user": _user_record(result.user),
        "error": result.error,
    }
    return {
        "time": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "remote_addr": state.remote if state else "",
        "tls_version": state.tls_version if state else None,
        "alpn": state.alpn if state else None,
        "method": req.method,
        "path": req.target,
        "http_version": req.http_version,
        "headers": [[n, v] for n, v in req.headers],
        "trailers": [[n, v] for n, v in req.trailers],
        "body_length": len(req.body),
        "source_ips": source_ips(req.headers, state.remote.rpartition(":")[0] if state else ""),
        "body_sha256": hashlib.sha256(req.body).hexdigest(),
        "peer_cert_cn": x509verify.common_name(peer[0]) if peer else None,
        "peer_chain_len": len(peer),
        "authentication": auth,
        "impersonated_user": _user_record(acting_as),
        "status": status,
    }


def serve_forever(
    config: EmulatorConfig,
    *,
    on_ready: Callable[[Address], None] | None = None,
) -> None:
    """Run until interrupted (the CLI's main loop)."""
    server = EmulatorServer(config)
    address = server.start()
    if on_ready is not None:
        on_ready(address)
    try:
        while True:
            time.sleep(3600)
    finally:
        server.stop()
