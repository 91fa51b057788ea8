"""Property-based tests (hypothesis): whatever a client sends, auditing never raises.

Building an event runs in the request path, so every input must give an event that fits the
audit.k8s.io/v1 schema and is valid UTF-8: odd paths and queries, bytes that are not UTF-8 (as
mitmproxy's surrogate escapes), any response body.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kube_front_proxy.identity.headers import Identity
from kube_front_proxy.observe.audit import AuditEvent
from kube_front_proxy.observe.request_info import RequestInfoError, parse_request_info
from tests.support.audit_schema import validate

# Strings as mitmproxy hands them over: bytes off the wire, undecodable ones surrogate-escaped.
wire = st.binary(max_size=60).map(lambda b: b.decode("utf-8", "surrogateescape"))
segment = st.sampled_from(
    ["api", "apis", "v1", "apps", "namespaces", "ns", "pods", "p", "exec", "watch", "proxy",
     "status", "log", "", "%2F", "%zz", ".."]
)  # fmt: skip
query_value = st.sampled_from(
    ["true", "false", "0", "1", "", "metadata.name=x", "metadata.name=a,b", "x in (a)", "!x",
     "9223372036854775808", "x\\", "a%3Db"]
)  # fmt: skip
query_key = st.sampled_from(
    ["watch", "fieldSelector", "labelSelector", "limit", "timeoutSeconds", "follow", "x;y"]
)
api_path = st.lists(segment, max_size=8).map(lambda parts: "/" + "/".join(parts))
query = st.lists(st.tuples(query_key, query_value), max_size=4).map(
    lambda pairs: "&".join(f"{k}={v}" for k, v in pairs)
)
target = st.one_of(
    wire,
    st.builds(lambda p, q: f"{p}?{q}" if q else p, api_path, query),
)
method = st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "get"])
RESOURCE_VERBS = {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection",
                  "proxy", ""}  # fmt: skip
user = st.one_of(st.none(), wire, st.builds(Identity, user=wire, groups=st.tuples(wire)))


@settings(max_examples=500, deadline=None)
@given(method, target)
def test_request_info_raises_nothing_but_its_own_error(method: str, target: str) -> None:
    try:
        info = parse_request_info(method, target)
    except RequestInfoError as e:
        assert e.info.verb == method.lower()  # what Go knows before the failure
        return
    if info.is_resource_request:
        assert info.verb in RESOURCE_VERBS
    else:
        assert info.verb == method.lower()


@settings(max_examples=300, deadline=None)
@given(method, target, wire, wire, user, st.integers(100, 599), st.binary(max_size=200))
def test_any_request_gives_a_valid_event(
    method: str,
    target: str,
    source_ip: str,
    user_agent: str,
    who: Identity | str | None,
    code: int,
    body: bytes,
) -> None:
    event = AuditEvent.for_request(method, target, source_ip, user_agent, who, "htpasswd", 0.5)
    for stage in (event, event.started(code, 1.0), event.complete(code, 2.0, body=body)):
        line = stage.to_json()
        line.encode("utf-8")  # strict: no lone surrogate
        validate(line)
