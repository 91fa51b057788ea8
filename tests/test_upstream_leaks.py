"""Upstream addresses kept from clients (upstream/hiding.py), and bounded decoding."""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib

import pytest
from mitmproxy import http

from kube_front_proxy.upstream.bounded_decode import decoded_body, decoded_prefix
from kube_front_proxy.upstream.hiding import MAX_DECODED, UpstreamHider

A = ("10.0.0.1", 6443)
PROXY = ("192.0.2.10", 8443)
MiB = 1 << 20
STATUS = b'{"kind":"Status","message":"dial https://10.0.0.1:6443 failed","code":503}'
HIDDEN = b'{"kind":"Status","message":"dial https://192.0.2.10:8443 failed","code":503}'


def request(path: str, method: str = "GET") -> http.Request:
    return http.Request.make(method, f"https://10.0.0.1:6443{path}")


def json_response(code: int, body: bytes, coding: str = "") -> http.Response:
    response = http.Response.make(code, b"", {"Content-Type": "application/json"})
    if coding:
        response.headers["Content-Encoding"] = coding
    response.raw_content = {"": body, "gzip": gzip.compress(body)}.get(coding, body)
    return response


def test_hider_rewrites_location_and_warning_and_drops_server() -> None:
    hider = UpstreamHider([A, ("fd00::1", 6443)])
    response = http.Response.make(
        301,
        b"",
        [
            (b"Location", b"https://10.0.0.1:6443/logs/"),
            (b"Warning", b'299 - "see https://[fd00::1]:6443/x"'),
            (b"Warning", b'299 - "unrelated"'),
            (b"Server", b"nginx/1.27"),
        ],
    )
    hider.headers(response, PROXY)
    assert response.headers.fields == (
        (b"Location", b"https://192.0.2.10:8443/logs/"),
        (b"Warning", b'299 - "see https://192.0.2.10:8443/x"'),
        (b"Warning", b'299 - "unrelated"'),
        (b"content-length", b"0"),
    )


@pytest.mark.parametrize("path", ["/api", "/apis/", "/apis/apps"])
@pytest.mark.parametrize("coding", ["", "gzip"])
def test_hider_rewrites_discovery_addresses(path: str, coding: str) -> None:
    body = {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": "10.9.9.9:6443"}
        ],
    }
    response = json_response(200, json.dumps(body).encode(), coding)
    UpstreamHider([A]).body(request(path), response, PROXY)
    assert response.headers.get("content-encoding", "") == coding
    assert response.content == (
        b'{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":'
        b'[{"clientCIDR":"0.0.0.0/0","serverAddress":"192.0.2.10:8443"}]}\n'
    )


@pytest.mark.parametrize("coding", ["", "gzip"])
def test_hider_rewrites_the_api_servers_status_bodies_but_not_user_data(coding: str) -> None:
    hider = UpstreamHider([A])
    response = json_response(503, STATUS, coding)
    hider.body(request("/api/v1/namespaces/default/pods"), response, PROXY)
    assert response.content == HIDDEN
    assert response.headers.get("content-encoding", "") == coding
    configmap = b'{"kind":"ConfigMap","data":{"kubeconfig":"server: https://10.0.0.1:6443"}}'
    response = json_response(200, configmap, coding)
    hider.body(request("/api/v1/namespaces/kube-public/configmaps/cluster-info"), response, PROXY)
    assert response.content == configmap


def test_hider_reads_a_pretty_printed_status() -> None:
    # kube-apiserver indents JSON for ?pretty=true and for curl, Wget and browsers.
    pretty = json.dumps(json.loads(STATUS), indent=2).encode()
    response = json_response(503, pretty)
    UpstreamHider([A]).body(request("/api/v1/pods?pretty=true"), response, PROXY)
    assert b"https://192.0.2.10:8443" in response.content
    assert b"10.0.0.1" not in response.content


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/namespaces/default/pods/nginx-1/proxy/status.json",
        "/api/v1/namespaces/default/pods/nginx-1:80/proxy",
        "/api/v1/namespaces/default/services/https:web:443/proxy/x",
        "/api/v1/nodes/node-1/proxy/metrics",
        "/api/v1/namespaces/default/pods/nginx-1/%70roxy/x",
        "/api/v1/proxy/namespaces/default/pods/nginx-1/x",
    ],
)
def test_hider_leaves_bodies_passed_through_from_backends(path: str) -> None:
    response = json_response(503, STATUS, "gzip")
    raw = response.raw_content
    UpstreamHider([A]).body(request(path), response, PROXY)
    assert response.raw_content == raw


def bomb(decoded_mib: int, head: bytes = b'{"kind":"Status","message":"') -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [compressor.compress(head)]
    zeros = b"A" * MiB
    out += [compressor.compress(zeros) for _ in range(decoded_mib)]
    out.append(compressor.compress(b'"}') + compressor.flush())
    return b"".join(out)


@pytest.mark.parametrize(
    "path,head",
    [
        ("/api/v1/namespaces/default/pods/nginx-1/log", b'{"kind":"Status","message":"'),
        ("/apis", b'{"kind":"APIGroupList","groups":"'),
        ("/api/v1/configmaps", b'{"kind":"ConfigMapList","items":"'),
    ],
)
def test_a_gzip_bomb_is_never_decoded_past_the_bound(path: str, head: bytes) -> None:
    response = json_response(500, b"", "")
    response.headers["Content-Encoding"] = "gzip"
    response.raw_content = raw = bomb(100, head)
    tracemalloc.start()
    try:
        UpstreamHider([A]).body(request(path), response, PROXY)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.raw_content == raw  # passed on as it came
    assert peak < 4 * MAX_DECODED  # was 100 MiB decoded, and as much again as text


def test_other_encodings_are_not_decoded() -> None:
    response = json_response(503, b"\x8b\x0f\x80" + STATUS + b"\x03")
    response.headers["Content-Encoding"] = "br"
    raw = response.raw_content
    UpstreamHider([A]).body(request("/api/v1/pods"), response, PROXY)
    assert response.raw_content == raw


# -- bounded_decode ------------------------------------------------------------------------------


def test_decoded_body_takes_identity_gzip_and_both_deflates() -> None:
    body = b'{"kind":"Status"}' * 100
    assert decoded_body(body, "", 10_000) == body
    assert decoded_body(body, "identity", 10_000) == body
    assert decoded_body(gzip.compress(body), " GZIP ", 10_000) == body
    assert decoded_body(zlib.compress(body), "deflate", 10_000) == body
    raw_deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    assert decoded_body(raw_deflate.compress(body) + raw_deflate.flush(), "deflate", 10_000) == body


def test_decoded_body_refuses_what_it_cannot_give_whole() -> None:
    body = b"x" * 1000
    packed = gzip.compress(body)
    assert decoded_body(packed, "gzip", 999) is None  # over the limit
    assert decoded_body(body, "", 999) is None
    assert decoded_body(packed[:-10], "gzip", 10_000) is None  # cut short
    assert decoded_body(packed + packed, "gzip", 10_000) is None  # another member after it
    assert decoded_body(b"not gzip", "gzip", 10_000) is None
    assert decoded_body(packed, "br", 10_000) is None
    assert decoded_body(packed, "gzip, gzip", 10_000) is None


def test_decoded_prefix_reads_only_the_start() -> None:
    assert decoded_prefix(bomb(50), "gzip", 16) == b'{"kind":"Status"'
    assert decoded_prefix(b'{"kind":"Status"}', "", 8) == b'{"kind":'
    assert decoded_prefix(b"\x00", "zstd", 8) is None
