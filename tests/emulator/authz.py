"""kube-apiserver's authorizer chain and the 403 it writes.

- `Attributes` is `k8s.io/apiserver pkg/authorization/authorizer` `AttributesRecord` (with
  `IsReadOnly`: get, list and watch).
- The chain is `k8s.io/kubernetes pkg/kubeapiserver/authorizer/reload.go` `newForConfig`: the
  `system:masters` privileged-group authorizer first (`authorizerfactory.NewPrivilegedGroups`),
  then one authorizer per `--authorization-mode`, in order, in a union
  (`k8s.io/apiserver pkg/authorization/union/union.go`: the first Allow or Deny wins; otherwise
  NoOpinion with every non-empty reason joined by newlines).
- Modes: `AlwaysAllow`, `AlwaysDeny` (`pkg/authorization/authorizerfactory/builtin.go`), `ABAC`
  (`abac.py`) and `RBAC`. RBAC is a stand-in with the bootstrap roles that matter here
  (`k8s.io/kubernetes plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go`):
  `system:public-info-viewer` (GET /healthz, /livez, /readyz, /version for everybody) and, for
  simplicity, everything for `system:authenticated`. RBAC gives no reason when nothing matched.
- A denial is written by `responsewriters.Forbidden` (`k8s.io/apiserver pkg/endpoints/handlers/
  responsewriters/errors.go`): `ForbiddenStatusError` = `NewForbidden(GroupResource, name,
  "<forbiddenMessage>[: <reason>]")`, the message HTML-sanitized, `X-Content-Type-Options:
  nosniff`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from . import goquote, status
from .authn import ALL_AUTHENTICATED
from .requestheader import UserInfo

SUPERUSER_GROUP = "system:masters"
PUBLIC_INFO_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version", "/version/"})
MODES = ("AlwaysAllow", "AlwaysDeny", "ABAC", "RBAC")


class Decision(enum.Enum):
    DENY = 0
    ALLOW = 1
    NO_OPINION = 2


@dataclass(frozen=True)
class Attributes:
    """`authorizer.AttributesRecord`: who wants to do what to which thing."""

    user: UserInfo
    verb: str
    resource_request: bool
    path: str = ""
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""

    def is_read_only(self) -> bool:
        return self.verb in ("get", "list", "watch")


class Authorizer(Protocol):
    """`authorizer.Authorizer`: a decision and a reason (errors are not emulated)."""

    def authorize(self, a: Attributes) -> tuple[Decision, str]: ...


class PrivilegedGroups:
    """`authorizerfactory.NewPrivilegedGroups`: members of these groups may do anything."""

    def __init__(self, *groups: str) -> None:
        self.groups = frozenset(groups)

    def authorize(self, a: Attributes) -> tuple[Decision, str]:
        if self.groups.intersection(a.user.groups):
            return Decision.ALLOW, ""
        return Decision.NO_OPINION, ""


class AlwaysAllow:
    def authorize(self, a: Attributes) -> tuple[Decision, str]:
        return Decision.ALLOW, ""


class AlwaysDeny:
    """`alwaysDenyAuthorizer`: no opinion, with a reason, so later authorizers still decide."""

    def authorize(self, a: Attributes) -> tuple[Decision, str]:
        return Decision.NO_OPINION, "Everything is forbidden."


class BootstrapRBAC:
    """The RBAC stand-in described in the module docstring."""

    def authorize(self, a: Attributes) -> tuple[Decision, str]:
        if ALL_AUTHENTICATED in a.user.groups:
            return Decision.ALLOW, ""
        if not a.resource_request and a.verb == "get" and a.path in PUBLIC_INFO_PATHS:
            return Decision.ALLOW, ""
        return Decision.NO_OPINION, ""


class Union:
    """`union.New`: the first Allow or Deny wins; NoOpinion collects the reasons."""

    def __init__(self, authorizers: Sequence[Authorizer]) -> None:
        self.authorizers = tuple(authorizers)

    def authorize(self, a: Attributes) -> tuple[Decision, str]:
        reasons: list[str] = []
        for authorizer in self.authorizers:
            decision, reason = authorizer.authorize(a)
            if reason:
                reasons.append(reason)
            if decision is not Decision.NO_OPINION:
                return decision, reason
        return Decision.NO_OPINION, "\n".join(reasons)


def forbidden_message(a: Attributes) -> str:
    """`forbiddenMessage`."""
    name = goquote.quote(a.user.name)
    if not a.resource_request:
        return f"User {name} cannot {a.verb} path {goquote.quote(a.path)}"
    resource = a.resource + (f"/{a.subresource}" if a.subresource else "")
    where = (
        f"in the namespace {goquote.quote(a.namespace)}" if a.namespace else "at the cluster scope"
    )
    return (
        f"User {name} cannot {a.verb} resource {goquote.quote(resource)}"
        f" in API group {goquote.quote(a.api_group)} {where}"
    )


def sanitize(message: str) -> str:
    """responsewriters' `sanitizer`: error text must never look like HTML."""
    return message.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def forbidden_status(a: Attributes, reason: str) -> status.StatusError:
    """`ForbiddenStatusError`."""
    message = sanitize(forbidden_message(a))
    if reason:
        message = f"{message}: {reason}"
    return status.forbidden(a.resource, a.api_group, a.name, message)
