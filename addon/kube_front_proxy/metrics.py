"""Prometheus metrics, served on their own address (metrics.listen in config.yaml).

Not labelled by user unless metrics.per_user is set: one series per user and verb and code
can grow without bound on a large cluster. A registry of our own, not the global one, so that
mitmproxy reloading the script does not register the same metrics twice.
"""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# Requests through a proxy take ~1-10 ms; watches and exec sessions take minutes.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 300)


class Metrics:
    def __init__(self, per_user: bool) -> None:
        self.per_user = per_user
        self.registry = CollectorRegistry()
        labels = ["verb", "code", "authenticator"] + (["user"] if per_user else [])
        self.requests = Counter(
            "kube_front_proxy_requests",
            "Requests answered, by Kubernetes verb, HTTP status and authenticator.",
            labels,
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
        self._server: WSGIServer | None = None

    def request_done(
        self,
        verb: str,
        code: int,
        authenticator: str,
        user: str,
        seconds: float | None,
        upstream_seconds: float | None,
    ) -> None:
        labels = [verb, str(code), authenticator] + ([user] if self.per_user else [])
        self.requests.labels(*labels).inc()
        if seconds is not None:
            self.duration.labels(verb).observe(seconds)
        if upstream_seconds is not None:
            self.upstream_duration.observe(upstream_seconds)

    def serve(self, host: str, port: int) -> None:
        self._server, _ = start_http_server(port, host, registry=self.registry)

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
