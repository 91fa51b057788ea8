"""The RequestInfo port against the Go tables it was ported from.

Sources (k8s.io/apiserver and k8s.io/apimachinery, as of kubernetes/apiserver@24a394e5 and
kubernetes/apimachinery@eed236ce):
- pkg/endpoints/request/requestinfo_test.go: TestGetAPIRequestInfo, TestGetNonAPIRequestInfo,
  TestSelectorParsing;
- pkg/labels/selector_test.go: TestSelectorParse, TestSetSelectorParser (valid or not);
- pkg/fields/selector_test.go: TestSelectorParse, TestSplitTerms.
The selector tables are run through parse_request_info: a selector the API server cannot
decode makes it ignore `fieldSelector=metadata.name=...`, so the name shows whether it parsed.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

from kube_front_proxy.observe.request_info import (
    RequestInfo,
    RequestInfoError,
    is_long_running,
    parse_request_info,
)

# method, url, verb, APIPrefix, APIGroup, APIVersion, namespace, resource, subresource, name,
# parts (space-separated). The Go test never compares APIPrefix: its table says "api" for the
# three /apis/... rows, where the Go code gives "apis", the value checked here.
API_REQUESTS = [
    # resource paths
    ("GET", "/api/v1/namespaces", "list",
     "api", "", "v1", "", "namespaces", "", "", "namespaces"),
    ("GET", "/api/v1/namespaces/other", "get",
     "api", "", "v1", "other", "namespaces", "", "other", "namespaces other"),
    ("GET", "/api/v1/namespaces/other/pods", "list",
     "api", "", "v1", "other", "pods", "", "", "pods"),
    ("GET", "/api/v1/namespaces/other/pods/foo", "get",
     "api", "", "v1", "other", "pods", "", "foo", "pods foo"),
    ("HEAD", "/api/v1/namespaces/other/pods/foo", "get",
     "api", "", "v1", "other", "pods", "", "foo", "pods foo"),
    ("GET", "/api/v1/pods", "list",
     "api", "", "v1", "", "pods", "", "", "pods"),
    ("HEAD", "/api/v1/pods", "list",
     "api", "", "v1", "", "pods", "", "", "pods"),
    ("GET", "/api/v1/namespaces/other/pods/foo", "get",
     "api", "", "v1", "other", "pods", "", "foo", "pods foo"),
    ("GET", "/api/v1/namespaces/other/pods", "list",
     "api", "", "v1", "other", "pods", "", "", "pods"),
    # special verbs
    ("GET", "/api/v1/proxy/namespaces/other/pods/foo", "proxy",
     "api", "", "v1", "other", "pods", "", "foo", "pods foo"),
    ("GET", "/api/v1/proxy/namespaces/other/pods/foo/subpath/not/a/subresource", "proxy",
     "api", "", "v1", "other", "pods", "", "foo", "pods foo subpath not a subresource"),
    ("GET", "/api/v1/watch/pods", "watch",
     "api", "", "v1", "", "pods", "", "", "pods"),
    ("GET", "/api/v1/pods?watch=true", "watch",
     "api", "", "v1", "", "pods", "", "", "pods"),
    ("GET", "/api/v1/pods?watch=false", "list",
     "api", "", "v1", "", "pods", "", "", "pods"),
    ("GET", "/api/v1/watch/namespaces/other/pods", "watch",
     "api", "", "v1", "other", "pods", "", "", "pods"),
    ("GET", "/api/v1/namespaces/other/pods?watch=1", "watch",
     "api", "", "v1", "other", "pods", "", "", "pods"),
    ("GET", "/api/v1/namespaces/other/pods?watch=0", "list",
     "api", "", "v1", "other", "pods", "", "", "pods"),
    # subresource identification
    ("GET", "/api/v1/namespaces/other/pods/foo/status", "get",
     "api", "", "v1", "other", "pods", "status", "foo", "pods foo status"),
    ("GET", "/api/v1/namespaces/other/pods/foo/proxy/subpath", "get",
     "api", "", "v1", "other", "pods", "proxy", "foo", "pods foo proxy subpath"),
    ("PUT", "/api/v1/namespaces/other/finalize", "update",
     "api", "", "v1", "other", "namespaces", "finalize", "other", "namespaces other finalize"),
    ("PUT", "/api/v1/namespaces/other/status", "update",
     "api", "", "v1", "other", "namespaces", "status", "other", "namespaces other status"),
    # verb identification
    ("PATCH", "/api/v1/namespaces/other/pods/foo", "patch",
     "api", "", "v1", "other", "pods", "", "foo", "pods foo"),
    ("DELETE", "/api/v1/namespaces/other/pods/foo", "delete",
     "api", "", "v1", "other", "pods", "", "foo", "pods foo"),
    ("POST", "/api/v1/namespaces/other/pods", "create",
     "api", "", "v1", "other", "pods", "", "", "pods"),
    # deletecollection verb identification
    ("DELETE", "/api/v1/nodes", "deletecollection",
     "api", "", "v1", "", "nodes", "", "", "nodes"),
    ("DELETE", "/api/v1/namespaces", "deletecollection",
     "api", "", "v1", "", "namespaces", "", "", "namespaces"),
    ("DELETE", "/api/v1/namespaces/other/pods", "deletecollection",
     "api", "", "v1", "other", "pods", "", "", "pods"),
    ("DELETE", "/apis/extensions/v1/namespaces/other/pods", "deletecollection",
     "apis", "extensions", "v1", "other", "pods", "", "", "pods"),
    # api group identification
    ("POST", "/apis/extensions/v1/namespaces/other/pods", "create",
     "apis", "extensions", "v1", "other", "pods", "", "", "pods"),
    # api version identification
    ("POST", "/apis/extensions/v1beta3/namespaces/other/pods", "create",
     "apis", "extensions", "v1beta3", "other", "pods", "", "", "pods"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "url", "verb", "prefix", "group", "version", "namespace", "resource",
     "subresource", "name", "parts"),
    API_REQUESTS,
)  # fmt: skip
def test_get_api_request_info(
    method: str,
    url: str,
    verb: str,
    prefix: str,
    group: str,
    version: str,
    namespace: str,
    resource: str,
    subresource: str,
    name: str,
    parts: str,
) -> None:
    info = parse_request_info(method, url)
    assert info.is_resource_request
    assert (info.verb, info.api_prefix, info.api_group, info.api_version) == (
        verb,
        prefix,
        group,
        version,
    )
    assert (info.namespace, info.resource, info.subresource, info.name) == (
        namespace,
        resource,
        subresource,
        name,
    )
    assert info.parts == tuple(parts.split())
    assert info.path == url.partition("?")[0]


@pytest.mark.parametrize(
    "url",
    [
        "/",  # no resource path
        "/api/version/",  # just apiversion; apiversion with no resource
        "/apis/group/version/",  # just prefix, group, version
        "/badprefix/version/resource",  # bad prefix
        "/apis/version/resource",  # missing api group
    ],
)
def test_get_api_request_info_error_cases_are_non_resource_requests(url: str) -> None:
    info = parse_request_info("GET", url)
    assert not info.is_resource_request
    assert info == RequestInfo(False, url, "get")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/api/version/resource", True),  # simple groupless
        ("/apis/group/version/resource/name/subresource", True),  # simple group
        ("/api/version/resource/name/subresource", True),  # more steps
        ("/apis/batch/v1/job", True),  # group list
        ("/apis/batch/v1/job/foo", True),  # group get
        ("/apis/batch/v1/job/foo/scale", True),  # group subresource
        ("/not-api/version/resource", False),  # bad root
        ("/apis/extensions/v1beta1", False),  # group without enough steps
        ("/apis/extensions/v1beta1/", False),  # group without enough steps 2
        ("/api/version", False),  # not enough steps
        ("/api", False),  # one step
        ("/", False),  # zero step
        ("", False),  # empty
    ],
)
def test_get_non_api_request_info(url: str, expected: bool) -> None:
    assert parse_request_info("GET", url).is_resource_request is expected


@pytest.mark.parametrize(
    ("method", "url", "name", "verb", "field_selector", "label_selector"),
    [
        # no selector
        ("GET", "/apis/group/version/resource", "", "list", "", ""),
        # metadata.name selector
        ("GET", "/apis/group/version/resource?fieldSelector=metadata.name=name1",
         "name1", "list", "metadata.name=name1", ""),
        # metadata.name selector with watch
        ("GET", "/apis/group/version/resource?watch=true&fieldSelector=metadata.name=name1",
         "name1", "watch", "metadata.name=name1", ""),
        # random selector
        ("GET", "/apis/group/version/resource?fieldSelector=foo=bar&labelSelector=baz=qux",
         "", "list", "foo=bar", "baz=qux"),
        # invalid selector with metadata.name
        ("GET", "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo",
         "", "list", "metadata.name=name1,foo", ""),
        # invalid selector with metadata.name with watch
        ("GET", "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo&watch=true",
         "", "watch", "metadata.name=name1,foo", ""),
        # invalid selector with metadata.name with watch false
        ("GET", "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo&watch=false",
         "", "list", "metadata.name=name1,foo", ""),
        # selector on deletecollection is honored
        ("DELETE", "/apis/group/version/resource?fieldSelector=foo=bar&labelSelector=baz=qux",
         "", "deletecollection", "foo=bar", "baz=qux"),
        # selector on repeated param matches parsed param
        ("GET", "/apis/group/version/resource?fieldSelector=metadata.name=foo"
         "&fieldSelector=metadata.name=bar&labelSelector=foo=bar&labelSelector=foo=baz",
         "foo", "list", "metadata.name=foo", "foo=bar"),
        # selector on other verb is ignored
        ("GET", "/apis/group/version/resource/name?fieldSelector=foo=bar&labelSelector=foo=bar",
         "name", "get", "", ""),
        # selector on deprecated root type watch is not parsed
        ("GET", "/apis/group/version/watch/resource?fieldSelector=metadata.name=foo"
         "&labelSelector=foo=bar", "", "watch", "", ""),
        # selector on deprecated root item watch is not parsed
        ("GET", "/apis/group/version/watch/resource/name?fieldSelector=metadata.name=foo"
         "&labelSelector=foo=bar", "name", "watch", "", ""),
    ],
)  # fmt: skip
def test_selector_parsing(
    method: str, url: str, name: str, verb: str, field_selector: str, label_selector: str
) -> None:
    info = parse_request_info(method, url)
    assert (info.name, info.verb) == (name, verb)
    assert (info.field_selector, info.label_selector) == (field_selector, label_selector)


def named_by_field_selector(field_selector: str, label_selector: str | None = None) -> bool:
    """Whether the API server would take the name from fieldSelector, i.e. both parse."""
    url = "/api/v1/pods?fieldSelector=" + quote(field_selector, safe="")
    if label_selector is not None:
        url += "&labelSelector=" + quote(label_selector, safe="")
    return parse_request_info("GET", url).name != ""


LABEL_SELECTORS = [
    # labels TestSelectorParse
    ("x=a,y=b,z=c", True), ("", True), ("x!=a,y=b", True), ("x=", True), ("x= ", True),
    ("x=,z= ", True), ("x= ,z= ", True), ("!x", True), ("x>1", True), ("x>1,z<5", True),
    ("x=a||y=b", False), ("x==a==b", False), ("!x=a", False), ("x<a", False),
    # labels TestSetSelectorParser
    ("\rx", True),
    ("this-is-a-dns.domain.com/key-with-dash", True),
    ("this-is-another-dns.domain.com/key-with-dash in (so,what)", True),
    ("0.1.2.domain/99 notin (10.10.100.1, tick.tack.clock)", True),
    ("foo  in\t (abc)", True), ("x notin\n (abc)", True), ("x  notin\t\t\t(abc,def)", True),
    ("x in (abc,def)", True), ("x in (abc,)", True), ("x in (abc,abc)", True),
    ("x in ()", True), ("x in (a,,)", True), ("x in (a,,,)", True), ("x in (a,,,,,,)", True),
    ("x in (a,,a,,a,,a,,)", True), ("x notin (abc,,def),bar,z in (),w", True),
    ("x,y in (a)", True), ("x=a", True), ("x>1", True), ("x<7", True), ("x=a,y!=b", True),
    ("x=a,y!=b,z in (h,i,j)", True), ("x=a||y=b", False), ("x,,y", False), (",x,y", False),
    ("x nott in (y)", False), ("x notin ( )", True), ("x notin (, a)", True),
    ("a in (xyz),", False), ("a in (xyz)b notin ()", False), ("a ", True),
    ("a in (x,y,notin, z,in)", True), ("a in (xyz abc)", False), ("a notin(", False),
    ("a (", False), ("(", False),
    # content.IsLabelKey and IsLabelValue
    ("example.com/x=y", True), ("Example.com/x", False), ("/x", False), ("a/b/c", False),
    ("x" * 63, True), ("x" * 64, False), ("x=" + "y" * 63, True), ("x=" + "y" * 64, False),
    ("x=-y", False), ("x>+1", False), ("x>99999999999999999999", False),
    # Go's lexer reads NUL as the end at the start of a token, and swallows it after one
    ("x=a \0garbage(", True), ("x=a,\0garbage(", False), ("x\0=a", True),
]  # fmt: skip


@pytest.mark.parametrize(("selector", "valid"), LABEL_SELECTORS)
def test_label_selectors_the_api_server_rejects_void_the_name(selector: str, valid: bool) -> None:
    assert named_by_field_selector("metadata.name=foo", selector) is valid


@pytest.mark.parametrize(
    ("selector", "valid"),
    [
        # fields TestSelectorParse
        ("x=a,y=b,z=c", True), ("", True), ("x!=a,y=b", True), ("x=a||y\\=b", True),
        ("x=a\\=\\=b", True), ("x=a||y=b", False), ("x==a==b", False), ("x=a,b", False),
        ("x in (a)", False), ("x in (a,b,c)", False), ("x", False),
        # fields TestSplitTerms: escapes
        ("k=\\,,k2=v2", True), ("k=\\\\,k2=v2", True), ("k=\\\\\\,,k2=v2", True),
        ("k=\\a\\b\\", False), ("k=\\", False), ("함=수,목=록", True),
    ],
)  # fmt: skip
def test_field_selectors_the_api_server_rejects_void_the_name(selector: str, valid: bool) -> None:
    assert named_by_field_selector(f"{selector},metadata.name=foo".lstrip(",")) is valid


@pytest.mark.parametrize(
    ("field_selector", "name"),
    [
        ("metadata.name=foo", "foo"),
        ("metadata.name==foo", "foo"),
        ("metadata.name!=foo", ""),
        ("metadata.name=b,metadata.name=a", "a"),  # the Go code sorts the terms first
        ("metadata.name=a\\,b", "a,b"),
        ("metadata.name=..", ""),  # not a valid path segment name
        ("metadata.name=a/b", ""),
        ("metadata.name=a%b", ""),
        ("spec.nodeName=n1", ""),
    ],
)
def test_name_from_field_selector(field_selector: str, name: str) -> None:
    url = "/api/v1/pods?fieldSelector=" + quote(field_selector, safe="")
    assert parse_request_info("GET", url).name == name


@pytest.mark.parametrize(
    ("query", "verb", "name"),
    [
        ("watch=TRUE", "watch", ""),
        ("watch=False", "list", ""),
        ("watch=", "watch", ""),  # Go: anything but false and 0 is true, even empty
        ("watch", "watch", ""),
        ("limit=500&fieldSelector=metadata.name%3Dfoo", "list", "foo"),
        ("limit=x&fieldSelector=metadata.name%3Dfoo", "list", ""),  # decoding fails
        ("timeoutSeconds=1.5&watch=1&fieldSelector=metadata.name%3Dfoo", "watch", ""),
        ("limit=9223372036854775808&watch=true", "watch", ""),  # overflow, raw watch still read
        ("watch=0;a=b", "list", ""),  # Go drops a pair with a semicolon
        ("watch=%zz", "list", ""),  # and one with a bad escape
        ("watch=false&watch=true", "list", ""),  # the first value counts
        ("watch=f%61lse", "list", ""),
        ("fieldSelector=metadata.name%3Dfoo+bar", "list", "foo bar"),  # '+' is a space
    ],
)
def test_list_options_decoding(query: str, verb: str, name: str) -> None:
    info = parse_request_info("GET", "/api/v1/namespaces/ns/pods?" + query)
    assert (info.verb, info.name) == (verb, name)


@pytest.mark.parametrize(
    ("method", "url", "verb", "subresource"),
    [
        # SPDY: POST; kubectl 1.30+ (exec, attach) and 1.31+ (port-forward): WebSocket GET.
        ("POST", "/api/v1/namespaces/ns/pods/p/exec?command=sh&stdin=true", "create", "exec"),
        ("GET", "/api/v1/namespaces/ns/pods/p/exec?command=sh&stdin=true", "get", "exec"),
        ("POST", "/api/v1/namespaces/ns/pods/p/attach?stdin=true", "create", "attach"),
        ("GET", "/api/v1/namespaces/ns/pods/p/attach?stdin=true", "get", "attach"),
        ("POST", "/api/v1/namespaces/ns/pods/p/portforward", "create", "portforward"),
        ("GET", "/api/v1/namespaces/ns/pods/p/portforward?ports=80", "get", "portforward"),
        ("GET", "/api/v1/namespaces/ns/pods/p/log?follow=true", "get", "log"),
        ("GET", "/api/v1/namespaces/ns/pods/p:8080/proxy/metrics", "get", "proxy"),
    ],
)
def test_exec_attach_portforward_take_the_verb_of_their_http_method(
    method: str, url: str, verb: str, subresource: str
) -> None:
    info = parse_request_info(method, url)
    assert (info.verb, info.subresource) == (verb, subresource)
    assert is_long_running(info)


@pytest.mark.parametrize(
    ("method", "url", "long_running"),
    [
        ("GET", "/api/v1/pods?watch=true", True),
        ("GET", "/api/v1/watch/pods", True),
        ("GET", "/api/v1/pods", False),
        ("GET", "/api/v1/namespaces/ns/pods/p/log", True),  # followed or not
        ("GET", "/api/v1/namespaces/ns/pods/p", False),
        ("GET", "/debug/pprof/profile", True),
        ("GET", "/healthz", False),
    ],
)
def test_long_running_requests(method: str, url: str, long_running: bool) -> None:
    assert is_long_running(parse_request_info(method, url)) is long_running


def test_path_is_decoded_like_go_url_path() -> None:
    info = parse_request_info("GET", "/api/v1/namespaces/a%2Fb/pods/x%20y")
    assert info.path == "/api/v1/namespaces/a/b/pods/x y"
    # the escaped slash splits, as in the API server: "b" is taken for the resource
    assert (info.namespace, info.resource, info.name, info.subresource) == ("a", "b", "pods", "x y")
    assert info.parts == ("b", "pods", "x y")


def test_non_resource_verbs_are_the_lowercased_method() -> None:
    assert parse_request_info("POST", "/apis").verb == "post"
    assert parse_request_info("GET", "/version?timeout=32s").verb == "get"
    # methods are case-sensitive: an unknown one has no resource verb
    assert parse_request_info("get", "/api/v1/pods").verb == ""
    assert parse_request_info("OPTIONS", "/api/v1/pods").verb == ""


@pytest.mark.parametrize("url", ["/api/v1/watch", "/apis/apps/v1/proxy?x=y"])
def test_a_special_verb_without_a_resource_is_an_error_with_what_is_known(url: str) -> None:
    with pytest.raises(RequestInfoError) as raised:
        parse_request_info("GET", url)
    info = raised.value.info
    assert info.is_resource_request
    assert info.verb == "get"
    assert info.api_version == "v1"
    assert info.resource == ""
