"""`metav1.Status` error bodies exactly as kube-apiserver writes them.

Constructors follow `k8s.io/apimachinery pkg/api/errors/errors.go` (`NewUnauthorized`,
`NewForbidden`, `NewNotFound`, `NewMethodNotSupported`); `Kind`/`APIVersion` are forced by
`k8s.io/apiserver pkg/endpoints/handlers/responsewriters/status.go` `ErrorToAPIStatus`. Field order
is `metav1.Status`'s (`k8s.io/apimachinery pkg/apis/meta/v1/types.go`): kind, apiVersion, metadata,
status, message, reason, details (omitempty), code. `StatusDetails` fields are all omitempty, in the
order name, group, kind.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import gojson, goquote


@dataclass(frozen=True)
class StatusError:
    code: int
    reason: str
    message: str
    # None: no details at all; {}: `"details":{}` (a non-nil, empty StatusDetails).
    details: dict[str, str] | None = None

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body

    def body(self) -> bytes:
        return gojson.encode(self.to_json())


def _details(name: str, group: str, kind: str) -> dict[str, str]:
    details = {"name": name, "group": group, "kind": kind}
    return {k: v for k, v in details.items() if v}


def unauthorized() -> StatusError:
    """What the failed-authentication handler sends: exactly 129 bytes with the newline."""
    return StatusError(401, "Unauthorized", "Unauthorized")


def forbidden(resource: str, group: str, name: str, err: str) -> StatusError:
    """`NewForbidden(GroupResource, name, err)`."""
    qualified = f"{resource}.{group}" if group else resource
    if not resource and not group:
        message = f"forbidden: {err}"
    elif not name:
        message = f"{qualified} is forbidden: {err}"
    else:
        message = f"{qualified} {goquote.quote(name)} is forbidden: {err}"
    return StatusError(403, "Forbidden", message, _details(name, group, resource))


def not_found(resource: str, group: str, name: str) -> StatusError:
    """`NewNotFound(GroupResource, name)`."""
    qualified = f"{resource}.{group}" if group else resource
    return StatusError(
        404,
        "NotFound",
        f"{qualified} {goquote.quote(name)} not found",
        _details(name, group, resource),
    )


def path_not_found() -> StatusError:
    """The generic 404 for paths no handler serves (`NewGenericServerResponse(404, ...)`)."""
    return StatusError(404, "NotFound", "the server could not find the requested resource", {})


def method_not_supported(resource: str, group: str, action: str) -> StatusError:
    """`NewMethodNotSupported(GroupResource, action)`."""
    qualified = f"{resource}.{group}" if group else resource
    return StatusError(
        405,
        "MethodNotAllowed",
        f"{action} is not supported on resources of kind {gojson.dumps(qualified)}",
        _details("", group, resource),
    )


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def service_unavailable(message: str) -> StatusError:
    """`NewServiceUnavailable(reason)`."""
    return StatusError(503, "ServiceUnavailable", message)
