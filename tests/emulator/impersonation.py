"""kube-apiserver's impersonation filter (`Impersonate-User`, `-Group`, `-Uid`, `-Extra-*`).

Follows `k8s.io/apiserver pkg/endpoints/filters/impersonation.go` at release-1.32 (`v1.32.4`, the
version the emulator reports): `WithImpersonation` and `buildImpersonationRequests`. It runs after
authentication and before authorization (`pkg/server/config.go` `DefaultBuildHandlerChain`).

- What is asked for becomes a list of `v1.ObjectReference`s, in this order: the user (kind
  `ServiceAccount` when `serviceaccount.SplitUsername` accepts the name, else `User`), one `Group`
  per `Impersonate-Group` value (empty values included), one `UserExtra` per value of each
  `Impersonate-Extra-<key>` header (key lowercased, then `url.PathUnescape`d, kept raw when that
  fails; Go walks a map here, this walks headers in order of first appearance), then `UID`.
- Groups, extras or a uid without a user: `responsewriters.InternalError`, a 500 in plain text
  (`Internal Server Error: "<RequestURI>": requested [...] without impersonating a user`).
  Kubernetes master (1.35, KEP-5284) answers a 400 BadRequest Status there instead; 1.32 does not.
- Each reference is authorized for the *authenticated* user with verb `impersonate`: resource
  `serviceaccounts` (with namespace), `users` or `groups` in API group "", `userextras/<key>` or
  `uids` in `authentication.k8s.io` (version v1); the name is what is impersonated. The first
  refusal is `responsewriters.Forbidden` with the authorizer's reason.
- The new user: a service account gets `system:serviceaccounts` and
  `system:serviceaccounts:<ns>` unless groups were given; anyone but `system:anonymous` gets
  `system:authenticated` unless `system:authenticated` or `system:unauthenticated` is already
  there; `system:anonymous` gets `system:unauthenticated` unless it is there.
- `Impersonate-User`, `-Group`, `-Uid` and every `Impersonate-Extra-*` header are removed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import api, authz, goquote
from .authn import ALL_AUTHENTICATED, ALL_UNAUTHENTICATED, ANONYMOUS_USER
from .requestheader import Header, Headers, UserInfo, header_map, unescape_extra_key

USER_HEADER = "Impersonate-User"
GROUP_HEADER = "Impersonate-Group"
UID_HEADER = "Impersonate-Uid"
EXTRA_PREFIX = "Impersonate-Extra-"
AUTHENTICATION_V1 = "authentication.k8s.io/v1"

# `k8s.io/apiserver pkg/authentication/serviceaccount/util.go`.
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
ALL_SERVICE_ACCOUNTS_GROUP = "system:serviceaccounts"

# `k8s.io/apimachinery pkg/util/validation`: IsDNS1123Label (namespaces) and IsDNS1123Subdomain
# (service account names).
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


@dataclass(frozen=True)
class ObjectReference:
    """The `v1.ObjectReference` fields the filter fills in."""

    kind: str
    namespace: str = ""
    name: str = ""
    api_version: str = ""
    field_path: str = ""

    def go_format(self) -> str:
        """`%v` of the struct: every field in order (UID and ResourceVersion are empty)."""
        fields = (self.kind, self.namespace, self.name, "", self.api_version, "", self.field_path)
        return "{" + " ".join(fields) + "}"


class ImpersonationError(Exception):
    """`buildImpersonationRequests` refused the headers."""


def split_service_account(username: str) -> tuple[str, str] | None:
    """`serviceaccount.SplitUsername`: (namespace, name), or None for any other user name."""
    if not username.startswith(SERVICE_ACCOUNT_PREFIX):
        return None
    parts = username[len(SERVICE_ACCOUNT_PREFIX) :].split(":")
    if len(parts) != 2:
        return None
    namespace, name = parts
    if len(namespace) > 63 or not _DNS1123_LABEL.fullmatch(namespace):
        return None
    if len(name) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(name):
        return None
    return namespace, name


def build_requests(headers: Headers) -> list[ObjectReference]:
    """`buildImpersonationRequests`."""
    grouped = header_map(headers)

    def values(name: str) -> list[str]:
        return grouped.get(name.lower(), ("", []))[1]

    requests: list[ObjectReference] = []
    user_values = values(USER_HEADER)
    requested_user = user_values[0] if user_values else ""  # Header.Get: the first value only
    if requested_user:
        sa = split_service_account(requested_user)
        if sa is not None:
            requests.append(ObjectReference("ServiceAccount", namespace=sa[0], name=sa[1]))
        else:
            requests.append(ObjectReference("User", name=requested_user))
    groups = values(GROUP_HEADER)
    requests.extend(ObjectReference("Group", name=g) for g in groups)
    has_extra = False
    prefix = EXTRA_PREFIX.lower()
    for folded, (_name, extra_values) in grouped.items():
        if not folded.startswith(prefix):
            continue
        has_extra = True
        key = unescape_extra_key(folded[len(prefix) :])
        requests.extend(
            ObjectReference("UserExtra", name=v, api_version=AUTHENTICATION_V1, field_path=key)
            for v in extra_values
        )
    uid_values = values(UID_HEADER)
    requested_uid = uid_values[0] if uid_values else ""
    if requested_uid:
        requests.append(ObjectReference("UID", name=requested_uid, api_version=AUTHENTICATION_V1))
    if (groups or has_extra or requested_uid) and not requested_user:
        listed = " ".join(r.go_format() for r in requests)
        raise ImpersonationError(f"requested [{listed}] without impersonating a user")
    return requests


def acting_as(requestor: UserInfo, ref: ObjectReference) -> authz.Attributes:
    """The `actingAsAttributes` checked for one reference."""
    group, _, version = ref.api_version.rpartition("/")
    resource, subresource = {
        "ServiceAccount": ("serviceaccounts", ""),
        "User": ("users", ""),
        "Group": ("groups", ""),
        "UserExtra": ("userextras", ref.field_path),
        "UID": ("uids", ""),
    }[ref.kind]
    return authz.Attributes(
        user=requestor,
        verb="impersonate",
        resource_request=True,
        api_group=group,
        api_version=version,
        namespace=ref.namespace,
        resource=resource,
        subresource=subresource,
        name=ref.name,
    )


def impersonated_user(requests: list[ObjectReference]) -> UserInfo:
    """The `user.DefaultInfo` the filter builds once every reference is allowed."""
    groups_specified = any(r.kind == "Group" for r in requests)
    username, uid = "", ""
    groups: list[str] = []
    extra: dict[str, tuple[str, ...]] = {}
    for ref in requests:
        if ref.kind == "ServiceAccount":
            username = f"{SERVICE_ACCOUNT_PREFIX}{ref.namespace}:{ref.name}"
            if not groups_specified:
                groups = [ALL_SERVICE_ACCOUNTS_GROUP, f"system:serviceaccounts:{ref.namespace}"]
        elif ref.kind == "User":
            username = ref.name
        elif ref.kind == "Group":
            groups.append(ref.name)
        elif ref.kind == "UserExtra":
            extra[ref.field_path] = (*extra.get(ref.field_path, ()), ref.name)
        else:
            uid = ref.name
    if username != ANONYMOUS_USER:
        if ALL_AUTHENTICATED not in groups and ALL_UNAUTHENTICATED not in groups:
            groups.append(ALL_AUTHENTICATED)
    elif ALL_UNAUTHENTICATED not in groups:
        groups.append(ALL_UNAUTHENTICATED)
    return UserInfo(name=username, uid=uid, groups=tuple(groups), extra=extra)


def clear_impersonation_headers(headers: Headers) -> list[Header]:
    exact = {USER_HEADER.lower(), GROUP_HEADER.lower(), UID_HEADER.lower()}
    prefix = EXTRA_PREFIX.lower()
    return [
        (n, v) for n, v in headers if n.lower() not in exact and not n.lower().startswith(prefix)
    ]


@dataclass(frozen=True)
class Outcome:
    """What the filter did: `refusal` is the response when it stopped the request; otherwise
    `user` is the impersonated user (None when nothing was asked) and `headers` what is left."""

    user: UserInfo | None
    headers: list[Header]
    refusal: api.Response | None = None


def impersonate(
    requestor: UserInfo, headers: Headers, authorizer: authz.Authorizer, request_uri: str
) -> Outcome:
    """`WithImpersonation` for one authenticated request."""
    try:
        requests = build_requests(headers)
    except ImpersonationError as e:
        text = f"Internal Server Error: {goquote.quote(request_uri)}: {e}"
        return Outcome(None, list(headers), api.http_error(500, authz.sanitize(text)))
    if not requests:
        return Outcome(None, list(headers))
    for ref in requests:
        attributes = acting_as(requestor, ref)
        decision, reason = authorizer.authorize(attributes)
        if decision is not authz.Decision.ALLOW:
            return Outcome(None, list(headers), api.forbidden_response(attributes, reason))
    return Outcome(impersonated_user(requests), clear_impersonation_headers(headers))
