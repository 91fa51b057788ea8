"""Prometheus metrics, served on their own address (metrics.listen in config.yaml).

Every label value comes from a closed set (observe/metric_labels.py), whatever clients send. Not
labelled by user unless metrics.per_user is set, and then only by logged-in users, up to
metric_labels.MAX_USERS of them. A registry of our own, not the global one, so that
mitmproxy reloading the script does not register the same metrics twice.

The same listener answers GET /healthz, for liveness probes. It is served from its own thread,
so answering proves little by itself: the proxy's event loop stamps a heartbeat every second,
and /healthz is a 503 once that heartbeat is older than `stall_seconds` (a loop stuck in a
blocking call or a busy loop serves nobody, while its sockets still accept).

GET /readyz, for readiness probes, answers the same, with one line per check in
kube-apiserver's verbose style, and is also a 503 while the proxy refuses every request
(`[-]cluster-trust` with the reason: upstream/trust_gate.py, through `not_ready`). With state.redis,
a Redis that does not answer shows there as `[-]shared-state` with the reason, but does not fail
the check: the proxy serves on with counters of its own (state/redis_link.py), and taking every
replica out of the Service because Redis is down would take the users' access with it.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any, NamedTuple
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kube_front_proxy.authn.login import REASONS
from kube_front_proxy.config.schema import AUTHENTICATORS
from kube_front_proxy.observe import metric_labels
from kube_front_proxy.state.redis_link import Health

# Requests through a proxy take ~1-10 ms; watches and exec sessions take minutes.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 300)
# The authenticator label: one of them, or none for a request that did not log in.
_LOGINS = frozenset(AUTHENTICATORS) | {"none"}
_RECORDING_STAGES = frozenset({"open", "write", "decode"})


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # probes every few seconds would flood the proxy's output


class _SharedStateCollector(Collector):
    def __init__(self, health: Callable[[], Health | None]) -> None:
        self.health = health

    def collect(self) -> Iterable[Metric]:
        health = self.health()
        if health is None:
            return
        yield GaugeMetricFamily(
            "kube_front_proxy_shared_state_degraded",
            "1 while Redis (state.redis) does not answer and login failures are counted in this "
            "process alone.",
            value=1 if health.degraded else 0,
        )
        yield CounterMetricFamily(
            "kube_front_proxy_shared_state_errors",
            "Redis commands and probes that failed or timed out.",
            value=health.errors,
        )


class Held(NamedTuple):
    """What one bounded store holds now, and its bound (None: bounded by another limit)."""

    store: str
    entries: int
    bound: int | None = None


class _HeldCollector(Collector):
    """Read at each scrape, on the metrics server's thread: sizes only (len() of what the event
    loop mutates is safe here; iterating it would not be)."""

    def __init__(self, held: Callable[[], Iterable[Held]]) -> None:
        self.held = held

    def collect(self) -> Iterable[Metric]:
        entries = GaugeMetricFamily(
            "kube_front_proxy_held_entries",
            "Entries held now by each bounded store: connections, remembered logins, lock-out "
            "counters, sessions, lingering sockets.",
            labels=["store"],
        )
        bounds = GaugeMetricFamily(
            "kube_front_proxy_held_entries_max",
            "The most entries each store holds (its configured or built-in bound).",
            labels=["store"],
        )
        for held in self.held():
            entries.add_metric([held.store], held.entries)
            if held.bound is not None:
                bounds.add_metric([held.store], held.bound)
        yield entries
        yield bounds


class Metrics:
    def __init__(self, per_user: bool, stall_seconds: float = 10.0) -> None:
        self.per_user = per_user
        self._user_label = metric_labels.UserLabels()
        self.stall_seconds = stall_seconds
        self._beat = time.monotonic()
        self._heartbeat: asyncio.TimerHandle | None = None
        self.registry = CollectorRegistry()
        labels = ["verb", "code", "authenticator"] + (["user"] if per_user else [])
        self.requests = Counter(
            "kube_front_proxy_requests",
            "Requests answered, by Kubernetes verb, HTTP status and authenticator.",
            labels,
            registry=self.registry,
        )
        self.audit_refused_unwritten = Counter(
            "kube_front_proxy_audit_refused_unwritten",
            "Audit events of refused requests not written: over audit.refused_per_minute or "
            "refused_per_address_per_minute.",
            registry=self.registry,
        )
        self.login_failures = Counter(
            "kube_front_proxy_login_failures",
            "Refused logins, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "kube_front_proxy_request_duration_seconds",
            "Time from the request's first byte to the response's last, by verb.",
            ["verb"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.upstream_duration = Histogram(
            "kube_front_proxy_upstream_duration_seconds",
            "Time the API server took: request sent to response headers received.",
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.open_streams = Gauge(
            "kube_front_proxy_open_streams",
            "Responses being streamed now (watch, logs -f, long bodies).",
            registry=self.registry,
        )
        self.reloads = Counter(
            "kube_front_proxy_config_reloads",
            "Configuration reloads, by result (ok, refused).",
            ["result"],
            registry=self.registry,
        )
        self.session_recording_failures = Counter(
            "kube_front_proxy_session_recording_failures",
            "exec and attach sessions whose recording could not be started (open), went on "
            "unwritten (write) or could not be decoded (decode).",
            ["stage"],
            registry=self.registry,
        )
        # The shared state's health now (the runtime's: a reload may replace it); None without.
        self.shared_health: Callable[[], Health | None] = lambda: None
        self.registry.register(_SharedStateCollector(lambda: self.shared_health()))
        # The bounded stores' sizes now (the addon's and its runtime's); set by the addon.
        self.held: Callable[[], Iterable[Held]] = tuple
        self.registry.register(_HeldCollector(lambda: self.held()))
        self._server: WSGIServer | None = None
        self._metrics_app = make_wsgi_app(self.registry)
        # Why the proxy refuses every request now ("": it serves); set by the addon.
        self.not_ready: Callable[[], str] = str

    def request_done(
        self,
        verb: str,
        code: int,
        authenticator: str,
        user: str,
        seconds: float | None,
        upstream_seconds: float | None,
    ) -> None:
        """One request answered; user is "" unless it logged in."""
        verb = metric_labels.verb(verb)
        labels = [verb, metric_labels.code(code), metric_labels.one_of(authenticator, _LOGINS)]
        if self.per_user:
            labels.append(self._user_label(user) if user else "")
        self.requests.labels(*labels).inc()
        if seconds is not None:
            self.duration.labels(verb).observe(seconds)
        if upstream_seconds is not None:
            self.upstream_duration.observe(upstream_seconds)

    def recording_failed(self, stage: str) -> None:
        self.session_recording_failures.labels(metric_labels.one_of(stage, _RECORDING_STAGES)).inc()

    def login_failed(self, reason: str) -> None:
        self.login_failures.labels(metric_labels.reason(reason, REASONS, AUTHENTICATORS)).inc()

    def serve(self, host: str, port: int) -> None:
        """Serve /metrics, /healthz and /readyz; call from the proxy's event loop, which it
        watches."""
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]

        class Server(_Server):
            address_family = family

        self._server = make_server(host, port, self._app, Server, handler_class=_QuietHandler)
        self._beat_now(asyncio.get_running_loop())
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _beat_now(self, loop: asyncio.AbstractEventLoop) -> None:
        self._beat = time.monotonic()
        self._heartbeat = loop.call_later(1.0, self._beat_now, loop)

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        if path not in ("/healthz", "/readyz"):
            metrics: Iterable[bytes] = self._metrics_app(environ, start_response)
            return metrics
        stalled = time.monotonic() - self._beat
        ok = stalled <= self.stall_seconds
        if path == "/readyz":
            refusal = self.not_ready().replace("\n", "; ")
            lines = ["[+]event-loop ok" if ok else f"[-]event-loop stalled for {stalled:.0f} s"]
            lines.append(f"[-]cluster-trust {refusal}" if refusal else "[+]cluster-trust ok")
            lines += _shared_state_lines(self.shared_health())
            ok = ok and not refusal
            lines.append("readyz check passed" if ok else "readyz check failed")
            text = "\n".join(lines) + "\n"
        else:
            text = "ok\n" if ok else f"event loop stalled for {stalled:.0f} s\n"
        start_response("200 OK" if ok else "503 Service Unavailable",
                       [("Content-Type", "text/plain")])  # fmt: skip
        return [text.encode()]

    def stop(self) -> None:
        if self._heartbeat:
            self._heartbeat.cancel()
            self._heartbeat = None
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _shared_state_lines(health: Health | None) -> list[str]:
    if health is None:
        return []
    if not health.degraded:
        return [f"[+]shared-state ok ({health.where})"]
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(health.degraded_since))
    return [f"[-]shared-state degraded since {since}: {health.where}: {health.reason}; "
            "login failures counted in this process (not a readiness failure)"]  # fmt: skip
