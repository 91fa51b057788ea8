"""kube-apiserver's ABAC authorizer (`--authorization-mode=ABAC --authorization-policy-file=FILE`).

Follows `k8s.io/kubernetes pkg/auth/authorizer/abac/abac.go`: `NewFromFile` (one JSON object per
line; blank lines and lines starting with `#` are skipped), `matches`, `subjectMatches`,
`verbMatches`, `resourceMatches`, `nonResourceMatches`, and `PolicyList.Authorize` (the first
matching policy allows; otherwise no opinion with the reason "No policy matched.").

Policy lines are `abac.authorization.kubernetes.io/v1beta1` `Policy` objects
(`pkg/apis/abac/v1beta1/types.go`), converted by `Convert_v1beta1_Policy_To_abac_Policy`
(`pkg/apis/abac/v1beta1/conversion.go`): a `"*"` user or group becomes the group
`system:authenticated`, so a wildcard never matches `system:anonymous`.

Unversioned (v0) lines, which kube-apiserver still migrates, are refused here: write v1beta1.
Unknown fields are ignored, as the apiserver's decoder does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .authn import ALL_AUTHENTICATED
from .authz import Attributes, Decision
from .requestheader import UserInfo

API_VERSION = "abac.authorization.kubernetes.io/v1beta1"
NO_POLICY_MATCHED = "No policy matched."
_STRING_FIELDS = ("user", "group", "apiGroup", "resource", "namespace", "nonResourcePath")


@dataclass(frozen=True)
class PolicySpec:
    """`abac.PolicySpec` (the internal type, after conversion)."""

    user: str = ""
    group: str = ""
    readonly: bool = False
    api_group: str = ""
    resource: str = ""
    namespace: str = ""
    non_resource_path: str = ""


def parse_policy(doc: Any) -> PolicySpec:
    """One decoded line -> the converted spec; ValueError for anything the decoder would refuse."""
    if not isinstance(doc, dict):
        raise ValueError("a policy line must be a JSON object")
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != "Policy":
        raise ValueError(
            f'only {{"apiVersion":"{API_VERSION}","kind":"Policy"}} lines are supported'
        )
    spec = doc.get("spec") or {}
    if not isinstance(spec, dict):
        raise ValueError("spec must be an object")
    for key in _STRING_FIELDS:
        if not isinstance(spec.get(key, ""), str):
            raise ValueError(f"spec.{key} must be a string")
    if not isinstance(spec.get("readonly", False), bool):
        raise ValueError("spec.readonly must be a boolean")
    user, group = spec.get("user", ""), spec.get("group", "")
    if user == "*" or group == "*":
        user, group = "", ALL_AUTHENTICATED
    return PolicySpec(
        user=user,
        group=group,
        readonly=spec.get("readonly", False),
        api_group=spec.get("apiGroup", ""),
        resource=spec.get("resource", ""),
        namespace=spec.get("namespace", ""),
        non_resource_path=spec.get("nonResourcePath", ""),
    )


def subject_matches(p: PolicySpec, user: UserInfo) -> bool:
    """`subjectMatches`: a policy naming neither user nor group matches nobody."""
    matched = False
    if p.user:
        if p.user == "*":
            matched = True
        else:
            matched = p.user == user.name
            if not matched:
                return False
    if p.group:
        if p.group == "*":
            matched = True
        else:
            matched = p.group in user.groups
            if not matched:
                return False
    return matched


def verb_matches(p: PolicySpec, a: Attributes) -> bool:
    """`verbMatches`: every policy allows reads; only a non-readonly policy allows the rest."""
    return a.is_read_only() or not p.readonly


def resource_matches(p: PolicySpec, a: Attributes) -> bool:
    """`resourceMatches`: an empty namespace in the policy matches cluster-scoped requests only."""
    return (
        a.resource_request
        and p.namespace in ("*", a.namespace)
        and p.resource in ("*", a.resource)
        and p.api_group in ("*", a.api_group)
    )


def non_resource_matches(p: PolicySpec, a: Attributes) -> bool:
    """`nonResourceMatches`: `*`, an exact path, or a `/prefix/*` subpath."""
    if a.resource_request:
        return False
    path = p.non_resource_path
    if path in ("*", a.path):
        return True
    return path.endswith("*") and a.path.startswith(path.rstrip("*"))


def matches(p: PolicySpec, a: Attributes) -> bool:
    return (
        subject_matches(p, a.user)
        and verb_matches(p, a)
        and (resource_matches(p, a) or non_resource_matches(p, a))
    )


class PolicyList:
    """`abac.PolicyList`, an `authz.Authorizer`."""

    def __init__(self, policies: Sequence[PolicySpec]) -> None:
        self.policies = tuple(policies)

    @classmethod
    def from_file(cls, path: Path) -> PolicyList:
        """`NewFromFile`; errors name the file and line like `policyLoadError`."""
        policies: list[PolicySpec] = []
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                trimmed = line.strip()
                if not trimmed or trimmed.startswith("#"):
                    continue
                try:
                    policies.append(parse_policy(json.loads(trimmed)))
                except ValueError as e:
                    raise ValueError(
                        f"error reading policy file {path}, line {number}: {line.rstrip()}: {e}"
                    ) from e
        return cls(policies)

    def authorize(self, a: Attributes) -> tuple[Decision, str]:
        if any(matches(p, a) for p in self.policies):
            return Decision.ALLOW, ""
        return Decision.NO_OPINION, NO_POLICY_MATCHED
