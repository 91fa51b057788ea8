"""Which API server each flow goes to, and what happens when that server fails it.

The mitmproxy side of upstreams.ServerPool: requestheaders calls route(), responseheaders
and error call answered()/failed(), and seam.upstream_retry asks retry_target(),
resend_target() and ends_cleanly() when a server connection fails or refuses a request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from mitmproxy import http
from mitmproxy.net.http import url

from kube_front_proxy.config.settings import Upstream
from kube_front_proxy.observe.request_info import RequestInfoError, parse_request_info
from kube_front_proxy.status import status_response
from kube_front_proxy.upstream.pool import Address, ServerPool
from kube_front_proxy.upstream.response_timeout import TIMED_OUT

logger = logging.getLogger("kube_front_proxy")

NO_SERVER_MESSAGE = "no Kubernetes API server is available"
# Safe to send twice: they change nothing (RFC 9110 9.2.2). POST, PUT, PATCH and DELETE are
# never retried, so nothing can be created or deleted twice.
RETRIED_METHODS = frozenset({"GET", "HEAD"})
# Go's HTTP/2 transport gives up on a request after 6 retries of this kind.
MAX_RESENDS = 6


@dataclass
class _Attempt:
    address: Address
    tried: list[Address] = field(default_factory=list)
    resent: int = 0


class Router:
    """Per-flow bookkeeping around a ServerPool; every method is cheap and never blocks."""

    def __init__(self, pool: ServerPool, retries: int) -> None:
        self.pool = pool
        self.retries = retries
        self._attempts: dict[str, _Attempt] = {}
        # The Host header as mitmproxy's reverse mode writes it, once per server: Request's
        # host setter IDNA-encodes on every call (about 40 us).
        self._host_headers = {s.address: url.hostport("https", *s.address) for s in pool.servers}

    def route(self, flow: http.HTTPFlow) -> None:
        """Point the flow at a usable server, or answer it 503 when there is none."""
        server = self.pool.acquire()
        if server is None:
            flow.response = status_response(503, NO_SERVER_MESSAGE)
            return
        self._attempts[flow.id] = _Attempt(server.address, [server.address])
        self._point(flow.request, server.address)

    def answered(self, flow: http.HTTPFlow) -> None:
        """The response head arrived: the request is no longer outstanding.

        Our own 504 (upstream_timeout) is a head too, but the server never answered: that
        counts as a failure, as a connection it dropped would.
        """
        attempt = self._attempts.pop(flow.id, None)
        if attempt:
            self.pool.release(attempt.address)
            if TIMED_OUT in flow.metadata:
                self.pool.connection_failed(attempt.address)
            else:
                self.pool.answered(attempt.address)

    def failed(self, flow: http.HTTPFlow) -> None:
        """The flow ended without a response head (or after it, which changes nothing)."""
        attempt = self._attempts.pop(flow.id, None)
        if attempt:
            self.pool.release(attempt.address)

    def retry_target(self, flow: http.HTTPFlow, *, unsent: bool = False) -> Address | None:
        """The server connection failed before any response byte: eject the server, and
        return another one for the flow if it may be sent again (it is then pointed there).

        `unsent`: the connection could not even be opened, so the request never left the
        proxy and may go elsewhere whatever its method (a restarting API server's closed
        listener); else only GET and HEAD are sent again."""
        attempt = self._attempts.get(flow.id)
        if attempt is None:
            return None
        self.pool.connection_failed(attempt.address)
        movable = may_retry(flow.request) or (unsent and not flow.request.stream)
        if not movable or len(attempt.tried) > self.retries:
            return None
        server = self.pool.acquire(exclude=attempt.tried)
        if server is None:
            return None
        self.pool.release(attempt.address)
        logger.info(
            "kube-front-proxy: %s %s retried on %s:%s",
            flow.request.method,
            flow.request.path.split("?", 1)[0],
            *server.address,
        )
        attempt.address = server.address
        attempt.tried.append(server.address)
        self._point(flow.request, server.address)
        return server.address

    def resend_target(self, flow: http.HTTPFlow) -> Address | None:
        """The server refused the request unprocessed (HTTP/2 GOAWAY): it is fine, but this
        connection is over. Return a server for the flow, preferably another one (a GOAWAY is
        kube-apiserver's way to rebalance clients, or it is shutting down), else the same one
        on a new connection; any method may go, as nothing happened yet."""
        attempt = self._attempts.get(flow.id)
        if attempt is None or attempt.resent >= MAX_RESENDS:
            return None
        server = self.pool.acquire(exclude=[attempt.address]) or self.pool.acquire()
        if server is None:
            return None
        self.pool.release(attempt.address)
        attempt.resent += 1
        attempt.address = server.address
        if server.address not in attempt.tried:
            attempt.tried.append(server.address)
        self._point(flow.request, server.address)
        return server.address

    def _point(self, request: http.Request, address: Address) -> None:
        request.data.host, request.data.port = address
        request.host_header = self._host_headers[address]

    def ends_cleanly(self, flow: http.HTTPFlow) -> bool:
        """Whether a started response cut off by its server should end as if complete.

        A watch is: client-go's StreamWatcher reads a clean end as the server ending the
        watch (as it does every 30-60 min) and watches again, on a server that works. A cut
        log or list must stay an error, so nobody takes it for the whole of it.
        """
        return is_watch(flow.request)


def build_router(upstream: Upstream, previous: Router | None) -> Router:
    """The router for these settings; on reload, the previous one if nothing it uses changed,
    so that ejections and outstanding counts carry over."""
    addresses = [(s.host, s.port) for s in upstream.servers]
    if (
        previous
        and [s.address for s in previous.pool.servers] == addresses
        and (previous.pool.balance, previous.pool.eject_seconds, previous.retries)
        == (upstream.balance, upstream.eject_seconds, upstream.retries)
    ):
        return previous
    pool = ServerPool(addresses, upstream.balance, upstream.eject_seconds)
    return Router(pool, upstream.retries)


def may_retry(request: http.Request) -> bool:
    """GET and HEAD, but not upgrades (exec, attach and port-forward are GETs that act)."""
    return (
        request.method in RETRIED_METHODS
        and "upgrade" not in request.headers
        and not request.stream
    )


def is_watch(request: http.Request) -> bool:
    try:
        info = parse_request_info(request.method, request.path)
    except RequestInfoError as e:
        info = e.info
    return info.verb == "watch"
