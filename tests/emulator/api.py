"""The (small) API surface behind authentication: enough for kubectl 1.32 to work.

Everything here is pure: a parsed request plus the authenticated user in, a response out.

- Request attributes: `k8s.io/apiserver pkg/endpoints/request/requestinfo.go`
  `RequestInfoFactory.NewRequestInfo` (verb, resource, namespace, name, subresource).
- Authorization: the authorizer chain of `authz.py` on the attributes of `requestinfo.go`
  (`k8s.io/apiserver pkg/endpoints/filters/authorization.go` `GetAuthorizerAttributes`); a
  denial is `responsewriters.Forbidden`.
- `/readyz` from `k8s.io/apiserver pkg/server/healthz/healthz.go` `handleRootHealth`, with a
  shortened list of checks; `shutdown` fails while the server is told it is not ready.
- Discovery documents, `/version`, pods and namespaces (`meta.k8s.io/v1` Table when asked, as
  `kubectl get` does), pod watches (with a MODIFIED event every `watch_event_interval` seconds
  when asked: `_watch_stream`), pod logs (with `chatty_log_bytes` more of them when asked:
  `chatty_log`), and `SelfSubjectReview` create
  (`k8s.io/kubernetes pkg/registry/authentication/selfsubjectreview/rest.go`), and the
  ConfigMap `kube-system/extension-apiserver-authentication` (`clustertrust.py`).
"""

from __future__ import annotations

import datetime
import itertools
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from . import authz, gojson, portforward, remotecommand, status, websocket
from .container import Container, default_filesystem
from .requestheader import Header, UserInfo
from .tunnel import Hijack

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"

# A plausible v1.32 kube-apiserver (`k8s.io/apimachinery pkg/version/types.go` `Info`).
VERSION_INFO: dict[str, str] = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.4",
    "gitCommit": "59526cd4867447956156ae3a602fcbac10a2c335",
    "gitTreeState": "clean",
    "buildDate": "2025-04-22T16:02:27Z",
    "goVersion": "go1.23.6",
    "compiler": "gc",
    "platform": "linux/amd64",
}

# `handleRootHealth` lists every installed check; a real kube-apiserver has some 30 (post-start
# hooks), this is the start and the end of that list.
READYZ_CHECKS = ("ping", "log", "etcd", "etcd-readiness", "informer-sync", "shutdown")

# On every emulated MODIFIED event: when the emulator sent it (Unix nanoseconds), so a test can
# tell how long the event took to reach a client.
SENT_AT_ANNOTATION = "emulator.kube-front-proxy/sent-at"


@dataclass
class Request:
    """One HTTP request as the server parsed it."""

    method: str
    target: str
    http_version: str = "HTTP/1.1"
    headers: list[Header] = field(default_factory=list)
    body: bytes = b""
    # Request trailer fields (chunked HTTP/1.1, or a trailing HEADERS frame in HTTP/2): read,
    # and ignored as kube-apiserver's handlers ignore Go's Request.Trailer; logged.
    trailers: list[Header] = field(default_factory=list)

    @property
    def path(self) -> str:
        return unquote(urlsplit(self.target).path) or "/"

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query, keep_blank_values=True)

    def header(self, name: str) -> str | None:
        """First value of a header, like Go's `Header.Get` (None when absent)."""
        folded = name.lower()
        return next((v for n, v in self.headers if n.lower() == folded), None)


@dataclass
class Response:
    """A response; `stream` (when set) yields the body in pieces after `body`.

    With `hijack`, the server writes nothing of its own: the hijack's head, then the connection
    belongs to the hijack (upgrades); `status` is only what the request log records.
    """

    status: int
    headers: list[Header] = field(default_factory=list)
    body: bytes = b""
    stream: Iterator[StreamItem] | None = None
    hijack: Hijack | None = None

    def header(self, name: str) -> str | None:
        folded = name.lower()
        return next((v for n, v in self.headers if n.lower() == folded), None)


def json_response(code: int, obj: Any, content_type: str = JSON) -> Response:
    return Response(code, [("Content-Type", content_type)], gojson.encode(obj))


def status_response(err: status.StatusError, *, nosniff: bool = False) -> Response:
    headers = [("Content-Type", JSON)]
    if nosniff:
        # responsewriters.RespondWithError (used for 403) adds it; the 401 path does not.
        headers.append(("X-Content-Type-Options", "nosniff"))
    return Response(err.code, headers, err.body())


def hijack_response(hijack: Hijack) -> Response:
    return Response(int(hijack.head.split(b" ", 2)[1]), hijack=hijack)


def unauthorized_response() -> Response:
    return status_response(status.unauthorized())


def http_error(code: int, text: str) -> Response:
    """Go's `http.Error`: plain text, nosniff, and a newline after the text."""
    return Response(
        code,
        [("Content-Type", TEXT), ("X-Content-Type-Options", "nosniff")],
        text.encode("utf-8", "surrogateescape") + b"\n",
    )


def text_not_found() -> Response:
    """Go's `http.NotFound`, the end of kube-apiserver's handler delegation chain
    (`k8s.io/apiserver pkg/util/notfoundhandler/not_found_handler.go`)."""
    return http_error(404, "404 page not found")


# ---------------------------------------------------------------------------------------------
# Request attributes


@dataclass(frozen=True)
class RequestInfo:
    """`request.RequestInfo`, reduced to what authorization and routing need."""

    is_resource_request: bool
    path: str
    verb: str
    api_prefix: str = ""
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    parts: tuple[str, ...] = ()


_SPECIAL_VERBS = frozenset({"proxy", "watch"})
_SPECIAL_VERBS_NO_SUBRESOURCES = frozenset({"proxy"})
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
_METHOD_VERBS = {
    "POST": "create",
    "GET": "get",
    "HEAD": "get",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}


def _is_watch(query: Mapping[str, Sequence[str]]) -> bool:
    # apimachinery's string->bool conversion: anything but "false"/"0" is true, even "".
    values = query.get("watch")
    if not values:
        return False
    return values[0].lower() not in ("false", "0")


def request_info(method: str, path: str, query: Mapping[str, Sequence[str]]) -> RequestInfo:
    """`NewRequestInfo` for the "api" (groupless) and "apis" prefixes."""
    non_resource = RequestInfo(False, path, method.lower())
    trimmed = path.strip("/")
    parts = trimmed.split("/") if trimmed else []
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return non_resource
    prefix, parts = parts[0], parts[1:]
    group = ""
    if prefix == "apis":
        if len(parts) < 3:
            return non_resource
        group, parts = parts[0], parts[1:]
    version, parts = parts[0], parts[1:]

    if parts[0] in _SPECIAL_VERBS and len(parts) >= 2:
        verb, parts = parts[0], parts[1:]
    else:
        verb = _METHOD_VERBS.get(method, "")

    namespace = ""
    if parts[0] == "namespaces" and len(parts) > 1:
        namespace = parts[1]
        if len(parts) > 2 and parts[2] not in _NAMESPACE_SUBRESOURCES:
            parts = parts[2:]

    resource = parts[0] if parts else ""
    name = parts[1] if len(parts) >= 2 else ""
    subresource = parts[2] if len(parts) >= 3 and verb not in _SPECIAL_VERBS_NO_SUBRESOURCES else ""
    if not name and verb == "get":
        verb = "watch" if _is_watch(query) else "list"
    if not name and verb == "delete":
        verb = "deletecollection"
    return RequestInfo(
        is_resource_request=True,
        path=path,
        verb=verb,
        api_prefix=prefix,
        api_group=group,
        api_version=version,
        namespace=namespace,
        resource=resource,
        subresource=subresource,
        name=name,
        parts=tuple(parts),
    )


def attributes(user: UserInfo, info: RequestInfo) -> authz.Attributes:
    """`GetAuthorizerAttributes`: what the authorizers see of a request."""
    return authz.Attributes(
        user=user,
        verb=info.verb,
        resource_request=info.is_resource_request,
        path=info.path,
        api_group=info.api_group,
        api_version=info.api_version,
        namespace=info.namespace,
        resource=info.resource,
        subresource=info.subresource,
        name=info.name,
    )


def forbidden_response(a: authz.Attributes, reason: str) -> Response:
    """`responsewriters.Forbidden`."""
    return status_response(authz.forbidden_status(a, reason), nosniff=True)


# ---------------------------------------------------------------------------------------------
# Content negotiation


def _media_types(accept: str | None) -> list[tuple[str, dict[str, str]]]:
    result: list[tuple[str, dict[str, str]]] = []
    for item in (accept or "").split(","):
        pieces = [p.strip() for p in item.split(";")]
        if not pieces[0]:
            continue
        params = {}
        for p in pieces[1:]:
            key, _, value = p.partition("=")
            params[key.strip().lower()] = value.strip()
        result.append((pieces[0].lower(), params))
    return result


def wants_table(accept: str | None) -> str | None:
    """The Table version kubectl asked for (`v1` or `v1beta1`), in its order of preference."""
    for media, params in _media_types(accept):
        if (
            media == "application/json"
            and params.get("as") == "Table"
            and params.get("g") == "meta.k8s.io"
            and params.get("v") in ("v1", "v1beta1")
        ):
            return params["v"]
        if media == "application/json" and "as" not in params:
            return None
    return None


def wants_aggregated_discovery(accept: str | None) -> bool:
    """`application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList` preferred?"""
    for media, params in _media_types(accept):
        if media == "application/json" and params.get("g") == "apidiscovery.k8s.io":
            if params.get("v") == "v2" and params.get("as") == "APIGroupDiscoveryList":
                return True
            continue
        return False
    return False


AGGREGATED_DISCOVERY = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


# ---------------------------------------------------------------------------------------------
# Objects


def _rfc3339(t: datetime.datetime) -> str:
    return t.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def human_duration(d: datetime.timedelta) -> str:
    """`k8s.io/apimachinery pkg/util/duration` `HumanDuration`, as the Age column uses it."""
    seconds = int(d.total_seconds())
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60 * 2:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        s = seconds % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y" if dy == 0 else f"{years}y{dy}d"
    return f"{hours // 24 // 365}y"


@dataclass(frozen=True)
class FakePod:
    namespace: str
    name: str
    image: str
    age: datetime.timedelta
    node: str = "node-1"
    ip: str = "10.244.0.10"
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))


DEFAULT_PODS = (
    FakePod("default", "nginx-1", "nginx:1.27", datetime.timedelta(minutes=42), ip="10.244.0.11"),
    FakePod("default", "nginx-2", "nginx:1.27", datetime.timedelta(minutes=41), ip="10.244.0.12"),
    FakePod(
        "kube-system",
        "coredns-7c65d6cfc9-x7k2p",
        "registry.k8s.io/coredns/coredns:v1.11.3",
        datetime.timedelta(days=3),
        ip="10.244.0.2",
    ),
)
DEFAULT_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")

_TABLE_OBJECT_DESCRIPTIONS = {
    "name": (
        "Name must be unique within a namespace. Is required when creating resources, although"
        " some resources may allow a client to request the generation of an appropriate name"
        " automatically. Name is primarily intended for creation idempotence and configuration"
        " definition. Cannot be updated. More info:"
        " https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
    ),
    "creationTimestamp": (
        "CreationTimestamp is a timestamp representing the server time when this object was"
        " created. It is not guaranteed to be set in happens-before order across separate"
        " operations. Clients may not set this value. It is represented in RFC3339 form and is"
        " in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info:"
        " https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
    ),
}


def _column(name: str, description: str, *, fmt: str = "", priority: int = 0) -> dict[str, Any]:
    return {
        "name": name,
        "type": "string",
        "format": fmt,
        "description": description,
        "priority": priority,
    }


# `k8s.io/kubernetes pkg/printers/internalversion/printers.go` podColumnDefinitions.
POD_COLUMNS = [
    _column("Name", _TABLE_OBJECT_DESCRIPTIONS["name"], fmt="name"),
    _column("Ready", "The aggregate readiness state of this pod for accepting traffic."),
    _column("Status", "The aggregate status of the containers in this pod."),
    _column(
        "Restarts",
        "The number of times the containers in this pod have been restarted and when the last"
        " container in this pod has restarted.",
    ),
    _column("Age", _TABLE_OBJECT_DESCRIPTIONS["creationTimestamp"]),
    _column("IP", "podIP address allocated to the pod.", priority=1),
    _column("Node", "NodeName indicates in which node this pod is scheduled.", priority=1),
    _column("Nominated Node", "nominatedNodeName is set when this pod preempts.", priority=1),
    _column("Readiness Gates", "If specified, all readiness gates will be evaluated.", priority=1),
]

NAMESPACE_COLUMNS = [
    _column("Name", _TABLE_OBJECT_DESCRIPTIONS["name"], fmt="name"),
    _column("Status", "The status of the namespace"),
    _column("Age", _TABLE_OBJECT_DESCRIPTIONS["creationTimestamp"]),
]


# ---------------------------------------------------------------------------------------------
# Discovery


@dataclass(frozen=True)
class ResourceDef:
    name: str
    singular: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...]
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    def legacy(self) -> dict[str, Any]:
        """`metav1.APIResource`."""
        doc: dict[str, Any] = {
            "name": self.name,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(self.verbs),
        }
        if self.short_names:
            doc["shortNames"] = list(self.short_names)
        if self.categories:
            doc["categories"] = list(self.categories)
        return doc

    def aggregated(self, group: str, version: str) -> dict[str, Any]:
        """`apidiscovery/v2` `APIResourceDiscovery`."""
        doc: dict[str, Any] = {
            "resource": self.name,
            "responseKind": {"group": group, "version": version, "kind": self.kind},
            "scope": "Namespaced" if self.namespaced else "Cluster",
            "singularResource": self.singular,
            "verbs": list(self.verbs),
        }
        if self.short_names:
            doc["shortNames"] = list(self.short_names)
        if self.categories:
            doc["categories"] = list(self.categories)
        return doc


CORE_RESOURCES = (
    ResourceDef("configmaps", "configmap", "ConfigMap", True, ("get", "list"), ("cm",)),
    ResourceDef("namespaces", "namespace", "Namespace", False, ("get", "list"), ("ns",)),
    ResourceDef("pods", "pod", "Pod", True, ("get", "list", "watch"), ("po",), ("all",)),
    ResourceDef("pods/log", "", "Pod", True, ("get",)),
    ResourceDef("pods/attach", "", "PodAttachOptions", True, ("create", "get")),
    ResourceDef("pods/exec", "", "PodExecOptions", True, ("create", "get")),
    ResourceDef("pods/portforward", "", "PodPortForwardOptions", True, ("create", "get")),
)
AUTHENTICATION_RESOURCES = (
    ResourceDef("selfsubjectreviews", "selfsubjectreview", "SelfSubjectReview", False, ("create",)),
)
API_GROUPS: dict[str, dict[str, tuple[ResourceDef, ...]]] = {
    "authentication.k8s.io": {"v1": AUTHENTICATION_RESOURCES},
}


def _aggregated_group(name: str, versions: Mapping[str, Sequence[ResourceDef]]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "creationTimestamp": None},
        "versions": [
            {
                "version": version,
                "resources": [r.aggregated(name, version) for r in resources if "/" not in r.name],
                "freshness": "Current",
            }
            for version, resources in versions.items()
        ],
    }


# ---------------------------------------------------------------------------------------------
# The API


class API:
    """Routes requests; holds the fixed objects."""

    def __init__(
        self,
        *,
        server_address: str = "127.0.0.1:6443",
        pods: Sequence[FakePod] = DEFAULT_PODS,
        namespaces: Sequence[str] = DEFAULT_NAMESPACES,
        configmaps: Mapping[tuple[str, str], Mapping[str, str]] | None = None,
        authorizer: authz.Authorizer | None = None,
        ready: Callable[[], bool] = lambda: True,
        now: datetime.datetime | None = None,
        watch_event_interval: float = 0.0,
        chatty_log_bytes: int = 0,
    ) -> None:
        """`configmaps`: (namespace, name) -> data; `ready`: asked on every /readyz;
        `watch_event_interval`: seconds between a pod watch's MODIFIED events (0: none);
        `chatty_log_bytes`: what every pod's log carries after its own lines (`chatty_log`)."""
        self.server_address = server_address
        self.pods = list(pods)
        self.namespaces = list(namespaces)
        self.configmaps = dict(configmaps or {})
        self.authorizer = authorizer or authz.Union(
            [authz.PrivilegedGroups(authz.SUPERUSER_GROUP), authz.BootstrapRBAC()]
        )
        self.ready = ready
        self.started = (now or datetime.datetime.now(datetime.UTC)).replace(microsecond=0)
        self.resource_version = 1000
        self.watch_event_interval = watch_event_interval
        self.chatty_log_bytes = chatty_log_bytes
        # Every emulated modification takes the next resourceVersion, across all watches, as
        # writes to etcd do; lists keep answering the fixed objects at `resource_version`.
        self._modifications = itertools.count(self.resource_version + 1)
        self._modifications_lock = threading.Lock()
        self._containers: dict[tuple[str, str], Container] = {}

    # -- entry point --------------------------------------------------------------------------

    def handle(self, req: Request, user: UserInfo) -> Response:
        info = request_info(req.method, req.path, req.query)
        attrs = attributes(user, info)
        decision, reason = self.authorizer.authorize(attrs)
        if decision is not authz.Decision.ALLOW:
            return forbidden_response(attrs, reason)
        if not info.is_resource_request:
            return self._non_resource(req, info, user)
        return self._resource(req, info, user)

    # -- non-resource paths --------------------------------------------------------------------

    def _non_resource(self, req: Request, info: RequestInfo, user: UserInfo) -> Response:
        path = info.path
        if path in ("/version", "/version/"):
            return json_response(200, VERSION_INFO)
        if path == "/readyz":
            return self._readyz(req)
        if path == "/readyz/shutdown" and not self.ready():
            # The single check's handler, `adaptCheckToHandler`; `shutdown`'s error text.
            return http_error(500, "internal server error: process is shutting down")
        if re.fullmatch(r"/(healthz|livez|readyz)(/.*)?", path):
            return Response(
                200, [("Content-Type", TEXT), ("X-Content-Type-Options", "nosniff")], b"ok"
            )
        accept = req.header("Accept")
        if path in ("/api", "/api/"):
            if wants_aggregated_discovery(accept):
                doc = {
                    "kind": "APIGroupDiscoveryList",
                    "apiVersion": "apidiscovery.k8s.io/v2",
                    "metadata": {},
                    "items": [_aggregated_group("", {"v1": CORE_RESOURCES})],
                }
                return json_response(200, doc, AGGREGATED_DISCOVERY)
            return json_response(
                200,
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": self.server_address}
                    ],
                },
            )
        if path in ("/apis", "/apis/"):
            if wants_aggregated_discovery(accept):
                doc = {
                    "kind": "APIGroupDiscoveryList",
                    "apiVersion": "apidiscovery.k8s.io/v2",
                    "metadata": {},
                    "items": [_aggregated_group(g, v) for g, v in API_GROUPS.items()],
                }
                return json_response(200, doc, AGGREGATED_DISCOVERY)
            return json_response(
                200,
                {
                    "kind": "APIGroupList",
                    "apiVersion": "v1",
                    "groups": [self._api_group(g) for g in API_GROUPS],
                },
            )
        if path.rstrip("/") == "/api/v1":
            return self._resource_list("v1", CORE_RESOURCES)
        match = re.fullmatch(r"/apis/([^/]+)/?", path)
        if match and match.group(1) in API_GROUPS:
            return json_response(200, {"kind": "APIGroup", **self._api_group(match.group(1))})
        match = re.fullmatch(r"/apis/([^/]+)/([^/]+)/?", path)
        if match and match.group(2) in API_GROUPS.get(match.group(1), {}):
            group, version = match.groups()
            return self._resource_list(f"{group}/{version}", API_GROUPS[group][version])
        if path.startswith(("/api/", "/apis/")):
            return status_response(status.path_not_found())
        return text_not_found()

    def _readyz(self, req: Request) -> Response:
        """`handleRootHealth("readyz", ...)`: failures always verbose, success `ok` unless
        `?verbose`."""
        ready = self.ready()
        lines = "".join(
            f"[-]{name} failed: reason withheld\n"
            if name == "shutdown" and not ready
            else f"[+]{name} ok\n"
            for name in READYZ_CHECKS
        )
        if not ready:
            return http_error(500, f"{lines}readyz check failed")
        headers = [("Content-Type", TEXT), ("X-Content-Type-Options", "nosniff")]
        if "verbose" not in req.query:
            return Response(200, headers, b"ok")
        return Response(200, headers, f"{lines}readyz check passed\n".encode())

    def _api_group(self, group: str) -> dict[str, Any]:
        versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in API_GROUPS[group]]
        return {"name": group, "versions": versions, "preferredVersion": versions[0]}

    def _resource_list(self, group_version: str, resources: Sequence[ResourceDef]) -> Response:
        return json_response(
            200,
            {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": group_version,
                "resources": [r.legacy() for r in resources],
            },
        )

    # -- resources -----------------------------------------------------------------------------

    def _resource(self, req: Request, info: RequestInfo, user: UserInfo) -> Response:
        if info.api_prefix == "apis":
            versions = API_GROUPS.get(info.api_group)
            if versions is None or info.api_version not in versions:
                return status_response(status.path_not_found())
            if (
                info.api_group == "authentication.k8s.io"
                and info.resource == "selfsubjectreviews"
                and not info.name
                and not info.namespace
            ):
                if info.verb != "create":
                    return status_response(
                        status.method_not_supported(info.resource, info.api_group, info.verb)
                    )
                return self._self_subject_review(user)
            return status_response(status.path_not_found())
        if info.api_version != "v1":
            return status_response(status.path_not_found())
        if info.resource == "pods":
            return self._pods(req, info)
        if info.resource == "namespaces" and not info.subresource:
            return self._namespaces(req, info)
        if info.resource == "configmaps" and not info.subresource:
            return self._configmaps(info)
        return status_response(status.path_not_found())

    def _self_subject_review(self, user: UserInfo) -> Response:
        user_info: dict[str, Any] = {}
        if user.name:
            user_info["username"] = user.name
        if user.uid:
            user_info["uid"] = user.uid
        if user.groups:
            user_info["groups"] = list(user.groups)
        if user.extra:
            user_info["extra"] = gojson.sorted_map({k: list(v) for k, v in user.extra.items()})
        now = datetime.datetime.now(datetime.UTC)
        review = {
            "kind": "SelfSubjectReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": _rfc3339(now)},
            "status": {"userInfo": user_info},
        }
        return json_response(201, review)

    # pods

    def _pod_object(self, pod: FakePod, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        created = _rfc3339(self.started - pod.age)
        return {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": metadata or self._pod_metadata(pod),
            "spec": {
                "containers": [
                    {
                        "name": pod.name.split("-")[0],
                        "image": pod.image,
                        "resources": {},
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File",
                        "imagePullPolicy": "IfNotPresent",
                    }
                ],
                "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 30,
                "dnsPolicy": "ClusterFirst",
                "serviceAccountName": "default",
                "nodeName": pod.node,
                "schedulerName": "default-scheduler",
                "enableServiceLinks": True,
                "preemptionPolicy": "PreemptLowerPriority",
            },
            "status": {
                "phase": "Running",
                "conditions": [
                    {
                        "type": t,
                        "status": "True",
                        "lastProbeTime": None,
                        "lastTransitionTime": created,
                    }
                    for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
                ],
                "hostIP": "172.18.0.2",
                "podIP": pod.ip,
                "podIPs": [{"ip": pod.ip}],
                "startTime": created,
                "containerStatuses": [
                    {
                        "name": pod.name.split("-")[0],
                        "state": {"running": {"startedAt": created}},
                        "lastState": {},
                        "ready": True,
                        "restartCount": 0,
                        "image": pod.image,
                        "imageID": "",
                        "started": True,
                    }
                ],
                "qosClass": "BestEffort",
            },
        }

    def _pod_metadata(self, pod: FakePod) -> dict[str, Any]:
        return {
            "name": pod.name,
            "namespace": pod.namespace,
            "uid": pod.uid,
            "resourceVersion": str(self.resource_version - 10),
            "creationTimestamp": _rfc3339(self.started - pod.age),
            "labels": {"app": pod.name.split("-")[0]},
        }

    def _pod_row(
        self,
        pod: FakePod,
        include_object: str,
        table_version: str,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        metadata = metadata or self._pod_metadata(pod)
        age = datetime.datetime.now(datetime.UTC) - (self.started - pod.age)
        row: dict[str, Any] = {
            "cells": [
                pod.name,
                "1/1",
                "Running",
                "0",
                human_duration(age),
                pod.ip,
                pod.node,
                "<none>",
                "<none>",
            ],
        }
        obj = self._row_object(
            self._pod_object(pod, metadata), metadata, include_object, table_version
        )
        if obj is not None:
            row["object"] = obj
        return row

    @staticmethod
    def _row_object(
        full: dict[str, Any], metadata: dict[str, Any], include_object: str, table_version: str
    ) -> dict[str, Any] | None:
        """`includeObject` query parameter: None, Metadata (default) or Object."""
        if include_object == "None":
            return None
        if include_object == "Object":
            return full
        return {
            "kind": "PartialObjectMetadata",
            "apiVersion": f"meta.k8s.io/{table_version}",
            "metadata": metadata,
        }

    def _table_doc(
        self,
        columns: list[dict[str, Any]] | None,
        rows: list[dict[str, Any]],
        table_version: str,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """`resource_version`: the one object's, for a Table of one object (`GenerateTable` in
        `k8s.io/kubernetes pkg/printers/tablegenerator.go` falls back to `meta.CommonAccessor`);
        by default the list's."""
        return {
            "kind": "Table",
            "apiVersion": f"meta.k8s.io/{table_version}",
            "metadata": {"resourceVersion": resource_version or str(self.resource_version)},
            # Not omitempty in Go: watch events after the first carry `null` here.
            "columnDefinitions": columns,
            "rows": rows,
        }

    def _table(
        self,
        columns: list[dict[str, Any]],
        rows: list[dict[str, Any]],
        table_version: str,
    ) -> Response:
        return json_response(
            200,
            self._table_doc(columns, rows, table_version),
            f"application/json;as=Table;v={table_version};g=meta.k8s.io",
        )

    def _pods(self, req: Request, info: RequestInfo) -> Response:
        if info.name and info.subresource in ("exec", "attach", "portforward"):
            return self._pod_stream(req, info)
        if info.name and info.subresource == "proxy":
            return self._pod_proxy(req, info)
        if info.verb not in ("get", "list", "watch"):
            return status_response(status.method_not_supported("pods", "", info.verb))
        if info.subresource:
            return self._pod_subresource(req, info)
        table_version = wants_table(req.header("Accept"))
        include_object = (req.query.get("includeObject") or ["Metadata"])[0]
        if info.name:
            pod = self._find_pod(info.namespace, info.name)
            if pod is None:
                return status_response(status.not_found("pods", "", info.name))
            if table_version:
                return self._table(
                    POD_COLUMNS,
                    [self._pod_row(pod, include_object, table_version)],
                    table_version,
                )
            return json_response(200, self._pod_object(pod))
        pods = [p for p in self.pods if not info.namespace or p.namespace == info.namespace]
        if info.verb == "watch":

            def watch_object(pod: FakePod, metadata: dict[str, Any], first: bool) -> dict[str, Any]:
                if not table_version:
                    return self._pod_object(pod, metadata)
                # `watchEmbeddedEncoder.doEncode` (k8s.io/apiserver pkg/endpoints/handlers/
                # response.go): one Table per event, column headers in the stream's first only.
                return self._table_doc(
                    POD_COLUMNS if first else None,
                    [self._pod_row(pod, include_object, table_version, metadata)],
                    table_version,
                    metadata["resourceVersion"],
                )

            return self._watch(req, pods, watch_object)
        if table_version:
            rows = [self._pod_row(p, include_object, table_version) for p in pods]
            return self._table(POD_COLUMNS, rows, table_version)
        return json_response(
            200,
            {
                "kind": "PodList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self.resource_version)},
                "items": [self._pod_object(p) for p in pods],
            },
        )

    def _find_pod(self, namespace: str, name: str) -> FakePod | None:
        return next((p for p in self.pods if p.namespace == namespace and p.name == name), None)

    def _pod_subresource(self, req: Request, info: RequestInfo) -> Response:
        pod = self._find_pod(info.namespace, info.name)
        if pod is None:
            return status_response(status.not_found("pods", "", info.name))
        if info.subresource != "log" or info.verb != "get":
            return status_response(status.path_not_found())
        lines = [
            f"{_rfc3339(self.started - pod.age)} {pod.name} started\n",
            f"{_rfc3339(self.started)} {pod.name} ready\n",
        ]
        follow = (req.query.get("follow") or ["false"])[0].lower() == "true"
        headers = [("Content-Type", TEXT)]
        if self.chatty_log_bytes:
            chatty = chatty_log(pod.name, self.chatty_log_bytes)
            return Response(200, headers, b"", stream=_log(lines, chatty, follow))
        if not follow:
            return Response(200, headers, "".join(lines).encode())
        return Response(200, headers, b"", stream=_log(lines, (), follow))

    def _pod_proxy(self, req: Request, info: RequestInfo) -> Response:
        """`pods/NAME[:PORT]/proxy/PATH`: the request goes to the pod's port (80 by default) and
        its answer comes back as the pod wrote it: status, headers but the hop-by-hop ones, and
        the body untouched, Content-Encoding included (`ProxyREST` in k8s.io/kubernetes
        pkg/registry/core/pod/rest/subresources.go; k8s.io/apimachinery pkg/util/proxy/
        upgradeaware.go, which leaves a backend's encoded body alone)."""
        name, _, port = info.name.partition(":")
        pod = self._find_pod(info.namespace, name)
        if pod is None:
            return status_response(status.not_found("pods", "", name))
        serve = self.container(pod).serve_port(int(port) if port.isdigit() else 80)
        if serve is None:
            return status_response(status.service_unavailable(
                f"error trying to reach service: dial tcp {pod.ip}:{port or 80}: "
                "connect: connection refused"))  # fmt: skip
        query = urlsplit(req.target).query
        target = "/" + "/".join(info.parts[3:]) + (f"?{query}" if query else "")
        lines = [f"{req.method} {target} HTTP/1.1", f"Host: {pod.ip}:{port or 80}"]
        lines += [f"{n}: {v}" for n, v in req.headers if n.lower() == "accept-encoding"]
        answer = _Collected()
        serve(_Bytes(("\r\n".join(lines) + "\r\n\r\n").encode()), answer)
        head, _, body = answer.data.partition(b"\r\n\r\n")
        status_line, *fields = head.decode("latin-1").split("\r\n")
        headers = [
            (n, v) for n, v in (f.split(": ", 1) for f in fields) if n.lower() not in _HOP_BY_HOP
        ]
        return Response(int(status_line.split(" ")[1]), headers, body)

    def container(self, pod: FakePod) -> Container:
        """The pod's one container, created on first use; its files live as long as the API."""
        key = (pod.namespace, pod.name)
        if key not in self._containers:
            self._containers[key] = Container(
                pod.name, pod.name.split("-")[0], default_filesystem(pod.name)
            )
        return self._containers[key]

    def _pod_stream(self, req: Request, info: RequestInfo) -> Response:
        """exec, attach and portforward (GET or POST: `ConnectMethods` of `ExecREST`,
        `AttachREST`, `PortForwardREST` in `k8s.io/kubernetes pkg/registry/core/pod/rest/
        subresources.go`)."""
        if req.method not in ("GET", "POST"):
            return status_response(
                status.method_not_supported(f"pods/{info.subresource}", "", info.verb)
            )
        pod = self._find_pod(info.namespace, info.name)
        if pod is None:
            return status_response(status.not_found("pods", "", info.name))
        container = self.container(pod)
        is_websocket = websocket.is_websocket_request(req.headers)
        if not is_websocket and not _is_upgrade_request(req.headers):
            # The upgrade-aware proxy to the kubelet is built with UpgradeRequired.
            return status_response(status.bad_request("Upgrade request required"))
        if info.subresource == "portforward":
            if is_websocket:
                hijack = portforward.websocket_portforward(
                    req.method, req.headers, pod.name, container.serve_port
                )
            else:
                hijack = portforward.spdy_portforward(req.headers, pod.name, container.serve_port)
            return hijack_response(hijack)
        opts = remotecommand.exec_options(req.query)
        if opts.container and opts.container != container.name:
            # `streamLocation` (`pkg/registry/core/pod/strategy.go`).
            return status_response(
                status.bad_request(f"container {opts.container} is not valid for pod {pod.name}")
            )

        def on_resize(width: int, height: int) -> None:
            container.resizes.append((width, height))

        runner = container.attach if info.subresource == "attach" else container.run
        if is_websocket:
            hijack = remotecommand.websocket_exec(req.method, req.headers, opts, runner, on_resize)
        else:
            hijack = remotecommand.spdy_exec(req.headers, opts, runner, on_resize)
        return hijack_response(hijack)

    def _watch(self, req: Request, pods: list[FakePod], encode: WatchObject) -> Response:
        """A watch stream: ADDED for every pod, then MODIFIED events for the first pod every
        `watch_event_interval` seconds (none when 0), until `timeoutSeconds` or the client goes.

        The fixed objects are older than any resourceVersion this server hands out, so a watch
        that starts from one (what `kubectl get -w` does after its list) gets no ADDED events;
        without one, or from "0", the current state comes first, like the real watch cache.
        """
        since = (req.query.get("resourceVersion") or [""])[0]
        initial = pods if since in ("", "0") else []
        timeout = (req.query.get("timeoutSeconds") or [""])[0]
        seconds = float(timeout) if timeout.isdigit() else None
        modified = pods[0] if pods and self.watch_event_interval > 0 else None
        stream = self._watch_stream(initial, modified, encode, seconds)
        return Response(200, [("Content-Type", JSON)], b"", stream=stream)

    def _watch_stream(
        self,
        initial: list[FakePod],
        modified: FakePod | None,
        encode: WatchObject,
        timeout: float | None,
    ) -> Iterator[StreamItem]:
        """The events, paced with `Hold`: the server writes each event as soon as this
        generator makes it, and notices a client that went away while holding.

        A MODIFIED event is what the watch cache relays after an update
        (`k8s.io/apiserver pkg/storage/cacher/cache_watcher.go` `convertToWatchEvent`): the
        object with a new, higher resourceVersion. Only the event is emulated; the pod itself
        does not change, so lists and later watches still show it as it was.
        """
        for i, pod in enumerate(initial):
            yield _watch_event("ADDED", encode(pod, self._pod_metadata(pod), i == 0))
        if modified is None:
            yield Hold(timeout)
            return
        start = time.monotonic()
        end = None if timeout is None else start + timeout
        first = not initial
        # Due times from the start, not from the previous event, so that the spacing does not
        # drift by the time each write takes.
        for n in itertools.count(1):
            due = start + n * self.watch_event_interval
            if end is not None and due >= end:
                yield Hold(max(end - time.monotonic(), 0.0))
                return
            yield Hold(max(due - time.monotonic(), 0.0))
            # Made only now, as the server asks for the next piece to write: sent-at is
            # stamped just before the bytes go out.
            yield _watch_event(
                "MODIFIED", encode(modified, self._modified_metadata(modified), first)
            )
            first = False

    def _modified_metadata(self, pod: FakePod) -> dict[str, Any]:
        with self._modifications_lock:
            resource_version = next(self._modifications)
        metadata = self._pod_metadata(pod)
        metadata["resourceVersion"] = str(resource_version)
        # ObjectMeta's field order puts annotations right after labels, the last field here.
        metadata["annotations"] = {SENT_AT_ANNOTATION: str(time.time_ns())}
        return metadata

    # namespaces

    def _namespace_object(self, name: str) -> dict[str, Any]:
        return {
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": self._namespace_metadata(name),
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }

    def _namespace_metadata(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"namespace/{name}")),
            "resourceVersion": "10",
            "creationTimestamp": _rfc3339(self.started - datetime.timedelta(days=3)),
            "labels": {"kubernetes.io/metadata.name": name},
        }

    def _namespaces(self, req: Request, info: RequestInfo) -> Response:
        name = info.name
        if info.verb not in ("get", "list"):
            return status_response(status.method_not_supported("namespaces", "", info.verb))
        table_version = wants_table(req.header("Accept"))
        include_object = (req.query.get("includeObject") or ["Metadata"])[0]
        names = self.namespaces if not name else [n for n in self.namespaces if n == name]
        if name and not names:
            return status_response(status.not_found("namespaces", "", name))
        if table_version:
            age = human_duration(datetime.timedelta(days=3))
            rows = []
            for n in names:
                row: dict[str, Any] = {"cells": [n, "Active", age]}
                obj = self._row_object(
                    self._namespace_object(n),
                    self._namespace_metadata(n),
                    include_object,
                    table_version,
                )
                if obj is not None:
                    row["object"] = obj
                rows.append(row)
            return self._table(NAMESPACE_COLUMNS, rows, table_version)
        if name:
            return json_response(200, self._namespace_object(name))
        return json_response(
            200,
            {
                "kind": "NamespaceList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self.resource_version)},
                "items": [self._namespace_object(n) for n in names],
            },
        )

    # configmaps

    def _configmap_object(self, namespace: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "kind": "ConfigMap",
            "apiVersion": "v1",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"configmap/{namespace}/{name}")),
                "resourceVersion": "20",
                "creationTimestamp": _rfc3339(self.started),
            },
        }
        data = self.configmaps[namespace, name]
        if data:  # `json:"data,omitempty"`
            obj["data"] = gojson.sorted_map(data)
        return obj

    def _configmaps(self, info: RequestInfo) -> Response:
        """Read-only ConfigMaps (no Table output: kubectl prints them client-side)."""
        if info.verb not in ("get", "list"):
            return status_response(status.method_not_supported("configmaps", "", info.verb))
        if info.name:
            if (info.namespace, info.name) not in self.configmaps:
                return status_response(status.not_found("configmaps", "", info.name))
            return json_response(200, self._configmap_object(info.namespace, info.name))
        items = [
            self._configmap_object(ns, name)
            for ns, name in sorted(self.configmaps)
            if not info.namespace or ns == info.namespace
        ]
        return json_response(
            200,
            {
                "kind": "ConfigMapList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self.resource_version)},
                "items": items,
            },
        )


# Go's httputil.ReverseProxy drops these (net/http/httputil/reverseproxy.go, hopHeaders).
_HOP_BY_HOP = frozenset({
    "connection", "proxy-connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "transfer-encoding", "upgrade",
})  # fmt: skip


class _Bytes:
    """A request, read by the pod's server as if from a socket."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self, n: int = -1, /) -> bytes:
        chunk, self._data = (self._data, b"") if n < 0 else (self._data[:n], self._data[n:])
        return chunk


class _Collected:
    """What the pod's server writes back."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes, /) -> None:
        self.data += data


def _is_upgrade_request(headers: Sequence[Header]) -> bool:
    """`httpstream.IsUpgradeRequest`: some Connection header mentions upgrade."""
    return any(n.lower() == "connection" and "upgrade" in v.lower() for n, v in headers)


@dataclass(frozen=True)
class Hold:
    """A stream item asking the server to keep the response open without writing.

    Watches and `logs -f` never end on their own; the server holds until `seconds` pass (None:
    until the client disconnects or the server stops), then ends the response.
    """

    seconds: float | None = None


StreamItem = bytes | Hold

# A watch event's object for a pod with this metadata; True for the stream's first event.
WatchObject = Callable[[FakePod, dict[str, Any], bool], dict[str, Any]]


def _watch_event(event_type: str, obj: dict[str, Any]) -> bytes:
    """`metav1.WatchEvent` as `watchEncoder.doEncode` writes it, one JSON document a line."""
    return gojson.encode({"type": event_type, "object": obj})


def _log(lines: list[str], more: Iterable[bytes], follow: bool) -> Iterator[StreamItem]:
    for line in lines:
        yield line.encode()
    yield from more
    if follow:
        yield Hold()


CHATTY_LINE_BYTES = 16 * 1024
CHATTY_LINE = re.compile(rb"\S+ (?P<pod>\S+) chatty line (?P<seq>\d+) sent-at (?P<sent>\d+) x*\n")


def chatty_log(pod: str, size: int) -> Iterator[bytes]:
    """A chatty container's log: `size` bytes (rounded up to whole lines) of 16 KiB lines, each
    with its sequence number and the time it was made (Unix nanoseconds, just before it is
    written), so a reader can tell how much the server had written by a given time."""
    for seq in range((size + CHATTY_LINE_BYTES - 1) // CHATTY_LINE_BYTES):
        now = time.time_ns()
        stamp = _rfc3339(datetime.datetime.fromtimestamp(now / 1e9, datetime.UTC))
        head = f"{stamp} {pod} chatty line {seq} sent-at {now} ".encode()
        yield head + b"x" * (CHATTY_LINE_BYTES - len(head) - 1) + b"\n"
