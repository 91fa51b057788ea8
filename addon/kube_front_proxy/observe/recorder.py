"""Following each request from login to its end, for the audit log and the metrics.

The mitmproxy hooks call one method each. A request's audit event is kept by flow id until its
last hook; an upgraded SPDY connection (exec, port-forward) ends with the client connection, so
its event is then kept by connection id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from mitmproxy import connection, http

from kube_front_proxy.authn.login import Outcome
from kube_front_proxy.authn.rate_budget import RateBudget
from kube_front_proxy.observe.audit import (
    SESSION_TOKEN_ID_ANNOTATION,
    SESSION_TOKEN_SOURCE_ANNOTATION,
    AuditEvent,
    AuditLog,
)
from kube_front_proxy.observe.metrics import Metrics

logger = logging.getLogger("kube_front_proxy")

# How often the proxy's log says how many refused requests were not audited.
_DROPPED_REPORT_SECONDS = 60.0


class Recorder:
    def __init__(
        self,
        audit: AuditLog | None,
        metrics: Metrics | None,
        refused_budget: RateBudget | None = None,
    ) -> None:
        self.audit = audit
        self.metrics = metrics
        self.refused_budget = refused_budget
        self._events: dict[str, AuditEvent] = {}
        self._upgraded: dict[str, AuditEvent] = {}
        # Refused requests over the budget: followed for the metrics, not written.
        self._unwritten: set[str] = set()
        self._reported_at = -_DROPPED_REPORT_SECONDS  # the first one is reported at once

    @property
    def enabled(self) -> bool:
        return self.audit is not None or self.metrics is not None

    def _write(self, event: AuditEvent) -> None:
        if self.audit:
            self.audit.write(event)

    def login(self, flow: http.HTTPFlow, outcome: Outcome) -> None:
        """After authentication: the RequestReceived event; the API server gets its Audit-ID."""
        if outcome.identity is None and self.metrics:
            self.metrics.login_failed(outcome.reason)
        event = AuditEvent.for_request(
            flow.request.method,
            flow.request.path,
            flow.client_conn.peername[0],
            flow.request.headers.get("user-agent", ""),
            outcome.identity or outcome.claimed_user,
            outcome.authenticator,
            flow.request.timestamp_start,
            refused=None if outcome.identity else outcome.reason,
        )
        if outcome.session:
            event = event.annotated({
                SESSION_TOKEN_ID_ANNOTATION: outcome.session.token_id,
                SESSION_TOKEN_SOURCE_ANNOTATION: outcome.session.source,
            })  # fmt: skip
        self._events[flow.id] = event
        flow.metadata["k8s_audit_id"] = event.audit_id
        if outcome.identity is not None:
            # kube-apiserver takes the Audit-ID header as its own audit ID: the two logs join.
            flow.request.headers["Audit-ID"] = event.audit_id
        elif not self._refused_within_budget(flow.client_conn.peername[0]):
            self._unwritten.add(flow.id)
            return
        self._write(event)

    def _refused_within_budget(self, address: str) -> bool:
        budget = self.refused_budget
        if budget is None or self.audit is None or budget.allow(address):
            return True
        if self.metrics:
            self.metrics.audit_refused_unwritten.inc()
        now = time.monotonic()
        if now - self._reported_at >= _DROPPED_REPORT_SECONDS:
            self._reported_at = now
            logger.warning(
                "kube-front-proxy: %d audit events of refused requests not written "
                "(audit.refused_per_minute / refused_per_address_per_minute)",
                budget.take_denied(),
            )
        return False

    def annotate(self, flow: http.HTTPFlow, annotations: Mapping[str, str]) -> None:
        """Annotations for the audit event of a request not yet answered."""
        event = self._events.get(flow.id)
        if event and annotations:
            self._events[flow.id] = event.annotated(annotations)

    def annotate_upgraded(self, client_id: str, annotations: Mapping[str, str]) -> None:
        """Annotations for the audit event of the SPDY session upgraded on this connection."""
        event = self._upgraded.get(client_id)
        if event and annotations:
            self._upgraded[client_id] = event.annotated(annotations)

    def internal_error(self, flow: http.HTTPFlow, message: str) -> None:
        event = self._events.pop(flow.id, None)
        if event:
            self._write(event.panic(message, time.time()))

    def response_started(self, flow: http.HTTPFlow, streamed: bool) -> None:
        if streamed and self.metrics:
            self.metrics.open_streams.inc()
        event = self._events.get(flow.id)
        if event and event.long_running and flow.response:
            self._write(event.started(flow.response.status_code, flow.response.timestamp_start))

    def response_done(self, flow: http.HTTPFlow) -> None:
        assert flow.response
        response = flow.response
        if response.stream and self.metrics:
            self.metrics.open_streams.dec()
        if flow.websocket is not None:
            return  # ends with websocket_end
        if response.status_code == 101:
            event = self._events.pop(flow.id, None)
            if event:
                self._upgraded[flow.client_conn.id] = event
            return
        self._finish(flow, response.status_code, response.timestamp_end, response.raw_content)

    def websocket_done(self, flow: http.HTTPFlow) -> None:
        self._finish(flow, 101, time.time(), None)

    def connection_closed(self, client: connection.Client) -> None:
        event = self._upgraded.pop(client.id, None)
        if event:
            self._write(event.complete(101, time.time()))

    def failed(self, flow: http.HTTPFlow) -> None:
        if flow.response and flow.response.stream and self.metrics:
            self.metrics.open_streams.dec()
        code = flow.response.status_code if flow.response else 502
        message = flow.error.msg if flow.error else ""
        self._finish(flow, code, time.time(), None, message=message)

    def _finish(
        self,
        flow: http.HTTPFlow,
        code: int,
        at: float | None,
        body: bytes | None,
        message: str = "",
    ) -> None:
        event = self._events.pop(flow.id, None)
        if event is None:
            return
        ended = at or time.time()
        if flow.id in self._unwritten:
            self._unwritten.discard(flow.id)
        else:
            self._write(event.complete(code, ended, body=body, message=message))
        if self.metrics:
            # A refused login's claimed name is not a label: random names would make series
            # without bound.
            logged_in = "k8s_user" in flow.metadata
            response = flow.response
            upstream = None
            if logged_in and response and response.timestamp_start and flow.request.timestamp_end:
                upstream = response.timestamp_start - flow.request.timestamp_end
            self.metrics.request_done(
                event.request.verb,
                code,
                flow.metadata.get("k8s_authenticator", "none"),
                event.user.user if logged_in else "",
                ended - event.received_at,
                upstream,
            )
