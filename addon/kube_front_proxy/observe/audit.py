"""Audit events in the API server's own format, audit.k8s.io/v1 Event, written as JSON lines.

An event records who asked for what, from where, and the answer's status, at level Metadata
(k8s.io/apiserver pkg/apis/audit/v1/types.go; filled in like pkg/audit/request.go and
pkg/endpoints/filters/audit.go). It never holds a header or a body, so never a password.
Tools that read kube-apiserver's --audit-log-path read this file too.

One request makes one event per stage, all with one auditID: RequestReceived when it arrives,
ResponseStarted when the answer's headers go out (long-running requests only: watch, exec,
attach, port-forward, logs, proxy), ResponseComplete at its end, or Panic if the proxy failed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

from kube_front_proxy.client.address import go_ip_string
from kube_front_proxy.identity.headers import Identity
from kube_front_proxy.observe.request_info import (
    RequestInfo,
    RequestInfoError,
    is_long_running,
    parse_request_info,
)

logger = logging.getLogger("kube_front_proxy")

AUTHENTICATOR_ANNOTATION = "kube-front-proxy/authenticator"
LOGIN_REFUSED_ANNOTATION = "kube-front-proxy/login-refused"
# A request made with a session token: the token's id and the login it was issued to.
SESSION_TOKEN_ID_ANNOTATION = "kube-front-proxy/session-token-id"
SESSION_TOKEN_SOURCE_ANNOTATION = "kube-front-proxy/session-token-issued-to"
# The token endpoint's answer: the id of the token it issued.
SESSION_TOKEN_ISSUED_ANNOTATION = "kube-front-proxy/session-token-issued"

# pkg/audit/request.go maybeTruncateUserAgent.
_MAX_USER_AGENT_BYTES = 1024
_TRUNCATED = "...TRUNCATED"
# A refused request's URI and claimed user name: the client did not log in, so they are cut
# like a user agent (kube-apiserver keeps whole URIs, of logged-in users).
_MAX_REFUSED_BYTES = 1024
# A Status body is a few hundred bytes; a bigger body is an object, not worth parsing.
_MAX_STATUS_BODY = 64 * 1024
_DETAIL_STRINGS = ("name", "group", "kind", "uid")
_CAUSE_STRINGS = ("reason", "message", "field")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class Stage(StrEnum):
    REQUEST_RECEIVED = "RequestReceived"
    RESPONSE_STARTED = "ResponseStarted"
    RESPONSE_COMPLETE = "ResponseComplete"
    PANIC = "Panic"


@dataclass(frozen=True)
class ResponseStatus:
    """The event's responseStatus, a metav1.Status with the fields the API server copies."""

    code: int
    status: str = ""  # "Success" or "Failure"
    message: str = ""
    reason: str = ""
    details: Mapping[str, object] | None = None

    def to_dict(self) -> dict[str, object]:
        fields = {
            "status": self.status,
            "message": self.message,
            "reason": self.reason,
            "details": dict(self.details or {}),
        }
        return {"metadata": {}, **_omit_empty(fields), "code": self.code}


@dataclass(frozen=True)
class AuditEvent:
    """One stage of one request's audit record; the stage methods return the next stage."""

    audit_id: str
    stage: Stage
    request_uri: str
    request: RequestInfo
    user: Identity
    source_ips: tuple[str, ...]
    user_agent: str
    received_at: float  # seconds since the epoch
    stage_at: float
    annotations: Mapping[str, str] = field(default_factory=dict)
    response_status: ResponseStatus | None = None
    # Whether the answer is a stream: then ResponseStarted is recorded before ResponseComplete.
    long_running: bool = False

    @classmethod
    def for_request(
        cls,
        method: str,
        target: str,
        source_ip: str,
        user_agent: str,
        user: Identity | str | None,
        authenticator: str,
        received_at: float,
        *,
        refused: str | None = None,
    ) -> AuditEvent:
        """The RequestReceived event of a request for target (path and query, as sent).

        user is the Identity of a logged-in user, else the name a refused login claimed (or
        None); refused is why a login was refused. Only a logged-in user's request can be
        long-running: the proxy answers every other one itself.
        """
        if refused is not None and not isinstance(user, Identity):
            target = _truncate(target, _MAX_REFUSED_BYTES)
            user = _truncate(user or "", _MAX_REFUSED_BYTES)
        try:
            info = parse_request_info(method, target)
        except RequestInfoError as e:
            info = e.info
        annotations = {AUTHENTICATOR_ANNOTATION: authenticator} if authenticator else {}
        if refused is not None:
            annotations[LOGIN_REFUSED_ANNOTATION] = refused
        if isinstance(user, Identity):
            identity, logged_in = user, True
        else:
            identity, logged_in = Identity(user=user or ""), False
        return cls(
            audit_id=str(uuid.uuid4()),
            stage=Stage.REQUEST_RECEIVED,
            request_uri=target,
            request=info,
            user=identity,
            source_ips=(go_ip_string(source_ip),) if source_ip else (),
            user_agent=_truncate(user_agent, _MAX_USER_AGENT_BYTES),
            received_at=received_at,
            stage_at=received_at,
            annotations=annotations,
            long_running=logged_in and is_long_running(info),
        )

    def started(self, code: int, at: float) -> AuditEvent:
        """ResponseStarted: the status line is out, the body streams from now on."""
        status = ResponseStatus(code)
        return replace(self, stage=Stage.RESPONSE_STARTED, stage_at=at, response_status=status)

    def complete(
        self,
        code: int,
        at: float,
        *,
        body: bytes | None = None,
        reason: str = "",
        message: str = "",
    ) -> AuditEvent:
        """ResponseComplete: the answer is over, or the connection was dropped.

        A Status object in body (an error from the API server or the proxy) is copied, as the
        API server does; reason and message, when given, say more, e.g. why a stream broke.
        """
        status = _status_from_body(code, body) or ResponseStatus(code)
        if reason or message:
            status = replace(
                status,
                status=status.status or ("Success" if code < 400 else "Failure"),
                reason=reason or status.reason,
                message=message or status.message,
            )
        return replace(self, stage=Stage.RESPONSE_COMPLETE, stage_at=at, response_status=status)

    def annotated(self, annotations: Mapping[str, str]) -> AuditEvent:
        """The same stage with more annotations (those of later stages carry them too)."""
        return replace(self, annotations={**self.annotations, **annotations})

    def panic(self, message: str, at: float) -> AuditEvent:
        """Panic: the proxy failed while handling the request and answered 500."""
        status = ResponseStatus(500, "Failure", message, "InternalError")
        return replace(self, stage=Stage.PANIC, stage_at=at, response_status=status)

    def to_dict(self) -> dict[str, object]:
        """The event as the API server encodes it: its field order, empty fields left out."""
        out: dict[str, object] = {
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Metadata",
            "auditID": self.audit_id,
            "stage": str(self.stage),
            "requestURI": self.request_uri,
            "verb": self.request.verb,
            "user": _user_info(self.user),
        }
        if self.source_ips:
            out["sourceIPs"] = list(self.source_ips)
        if self.user_agent:
            out["userAgent"] = self.user_agent
        if self.request.is_resource_request:
            out["objectRef"] = _object_ref(self.request)
        if self.response_status is not None:
            out["responseStatus"] = self.response_status.to_dict()
        out["requestReceivedTimestamp"] = micro_time(self.received_at)
        out["stageTimestamp"] = micro_time(self.stage_at)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    def to_json(self) -> str:
        """One line of JSON."""
        text = json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))
        return _valid_unicode(text)


def micro_time(seconds: float) -> str:
    """metav1.MicroTime in JSON: RFC 3339 in UTC with six fractional digits."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _omit_empty[V](fields: Mapping[str, V]) -> dict[str, V]:
    """Go's `json:",omitempty"`: the fields in their order, those with an empty value left out."""
    return {name: value for name, value in fields.items() if value}


def _user_info(identity: Identity) -> dict[str, object]:
    """authentication/v1 UserInfo."""
    fields: dict[str, object] = {
        "username": identity.user,
        "uid": identity.uid,
        "groups": list(identity.groups),
        "extra": {key: list(values) for key, values in identity.extra.items()},
    }
    return _omit_empty(fields)


def _object_ref(info: RequestInfo) -> dict[str, str]:
    fields = {
        "resource": info.resource,
        "namespace": info.namespace,
        "name": info.name,
        "apiGroup": info.api_group,
        "apiVersion": info.api_version,
        "subresource": info.subresource,
    }
    return _omit_empty(fields)


def _truncate(text: str, limit: int) -> str:
    raw = _valid_unicode(text).encode()
    if len(raw) <= limit:
        return text
    return raw[:limit].decode("utf-8", "replace") + _TRUNCATED


def _valid_unicode(text: str) -> str:
    """Text with a U+FFFD for each lone surrogate, as Go's JSON has one per undecodable byte.

    mitmproxy hands over bytes that are not UTF-8 as surrogate escapes, one per byte.
    """
    return _SURROGATE.sub("\ufffd", text)


def _status_from_body(code: int, body: bytes | None) -> ResponseStatus | None:
    """The Status object a response body holds, as the event copies it; None if it holds none."""
    if not body or len(body) > _MAX_STATUS_BODY or not body.lstrip().startswith(b"{"):
        return None
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict) or obj.get("kind") != "Status":
        return None
    strings = _strings(obj, ("status", "message", "reason"))
    # The code is the one the client got, not the one the body claims.
    return ResponseStatus(
        code,
        strings.get("status", ""),
        strings.get("message", ""),
        strings.get("reason", ""),
        _details(obj.get("details")),
    )


def _details(raw: object) -> dict[str, object] | None:
    """StatusDetails: its known fields, when they have the right type."""
    if not isinstance(raw, dict):
        return None
    details: dict[str, object] = dict(_strings(raw, _DETAIL_STRINGS))
    causes = raw.get("causes")
    if isinstance(causes, list):
        kept = [_strings(cause, _CAUSE_STRINGS) for cause in causes if isinstance(cause, dict)]
        if kept:
            details["causes"] = kept
    retry = raw.get("retryAfterSeconds")
    if type(retry) is int and retry:
        details["retryAfterSeconds"] = retry
    return details or None


def _strings(obj: Mapping[str, object], keys: tuple[str, ...]) -> dict[str, str]:
    return {key: value for key in keys if isinstance(value := obj.get(key), str) and value}


class AuditLog:
    """Audit events as JSON lines in a file, rotated by size like the API server's audit log.

    When a write would take the file past max_bytes, it becomes path.1 (path.1 becomes path.2,
    and so on; the oldest past `backups` is deleted). max_bytes 0 never rotates. Every event is
    flushed. Thread-safe. An I/O error never reaches the caller: it is logged once, the event
    is dropped, and the next event tries again.
    """

    def __init__(
        self,
        path: Path,
        max_bytes: int = 0,
        backups: int = 0,
        omit_stages: Collection[Stage] = (Stage.REQUEST_RECEIVED,),
    ) -> None:
        if max_bytes > 0 and backups < 1:
            raise ValueError("a rotated audit log needs at least one backup")
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        # Like an audit policy's omitStages; most policies omit RequestReceived.
        self.omit_stages = frozenset(omit_stages)
        self._lock = threading.Lock()
        self._file: BinaryIO | None = None
        self._dropped = 0

    def write(self, event: AuditEvent) -> None:
        if event.stage in self.omit_stages:
            return
        with self._lock:
            try:
                self._append((event.to_json() + "\n").encode())
            except Exception as e:
                self._close_file()
                if not self._dropped:
                    logger.error(
                        "kube-front-proxy: cannot write audit log %s: %s",
                        self.path,
                        e,
                        exc_info=not isinstance(e, OSError),  # anything else is a bug
                    )
                self._dropped += 1
                return
            if self._dropped:
                logger.warning(
                    "kube-front-proxy: audit log %s written again; %d events were lost",
                    self.path,
                    self._dropped,
                )
                self._dropped = 0

    def close(self) -> None:
        with self._lock:
            self._close_file()

    def _append(self, line: bytes) -> None:
        file = self._open()
        size = file.tell()
        if self.max_bytes and size and size + len(line) > self.max_bytes:
            self._rotate()
            file = self._open()
        file.write(line)
        file.flush()

    def _open(self) -> BinaryIO:
        if self._file is None:
            # Owner-only, like the API server's audit log: it names users and what they did.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._file = os.fdopen(fd, "ab")
        return self._file

    def _rotate(self) -> None:
        self._close_file()
        for n in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{n + 1}"))
        # Gone if someone else moved it away: then the new file simply starts empty.
        with contextlib.suppress(FileNotFoundError):
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))

    def _close_file(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            # A failed flush: its event was already counted as lost.
            with contextlib.suppress(OSError):
                file.close()
