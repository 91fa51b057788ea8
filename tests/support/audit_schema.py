"""The audit.k8s.io/v1 Event as a strict schema, and `validate` for a line the proxy wrote.

The `kubernetes` client has no audit.k8s.io types (the API server does not serve them), so the
Event envelope and its ObjectReference are a strict pydantic model transcribed from
k8s.io/apiserver pkg/apis/audit/v1/types.go (kubernetes/apiserver@24a394e5), and the nested
`user` and `responseStatus` are the official client's own V1UserInfo and V1Status models. All
of them forbid unknown fields and coerce no types; an event must also survive the round trip
unchanged, so no field is silently dropped.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Literal

from kubernetes.client import V1Status, V1UserInfo
from pydantic import BaseModel, ConfigDict, StringConstraints

# metav1.MicroTime as JSON: RFC3339Micro = "2006-01-02T15:04:05.000000Z07:00", always UTC.
MicroTime = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ObjectReference(_Strict):
    resource: str | None = None
    namespace: str | None = None
    name: str | None = None
    uid: str | None = None
    apiGroup: str | None = None
    apiVersion: str | None = None
    resourceVersion: str | None = None
    subresource: str | None = None


class AuthenticationMetadata(_Strict):
    impersonationConstraint: str | None = None


class Event(_Strict):
    """audit.k8s.io/v1 Event; the fields without omitempty in types.go are required."""

    kind: Literal["Event"]
    apiVersion: Literal["audit.k8s.io/v1"]
    level: Literal["None", "Metadata", "Request", "RequestResponse"]
    auditID: str
    stage: Literal["RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"]
    requestURI: str
    verb: str
    user: V1UserInfo
    impersonatedUser: V1UserInfo | None = None
    authenticationMetadata: AuthenticationMetadata | None = None
    sourceIPs: list[str] | None = None
    userAgent: str | None = None
    objectRef: ObjectReference | None = None
    responseStatus: V1Status | None = None
    requestObject: dict[str, object] | None = None
    responseObject: dict[str, object] | None = None
    requestReceivedTimestamp: MicroTime
    stageTimestamp: MicroTime
    annotations: dict[str, str] | None = None


def validate(line: str) -> dict[str, object]:
    """The event in line, checked against the schema; fails the test if it does not fit."""
    event = Event.model_validate_json(line)
    assert event.model_dump(mode="json", by_alias=True, exclude_none=True) == json.loads(line)
    for stamp in (event.requestReceivedTimestamp, event.stageTimestamp):
        datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")
    parsed: dict[str, object] = json.loads(line)
    return parsed
