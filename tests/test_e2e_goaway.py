"""End to end: the API server's HTTP/2 GOAWAY loses no response (RFC 9113 section 6.8).

kube-apiserver sends GOAWAY with `--goaway-chance`, after every unauthenticated HTTP/2 request
(1.29 and later) and when it shuts down gracefully; the emulator does the same (see its
README). Streams up to the GOAWAY's last stream id are answered and their answers must reach
the client; streams above it were never processed and the proxy sends them again on a new
connection, whatever their method.
"""

from __future__ import annotations

import collections
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from .e2e import Emulator, Proxy, basic_header, password_of, start_emulator, start_proxy_for
from .h2client import H2Client

PODS = "/api/v1/namespaces/default/pods"
REVIEW = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
AUTH = [(n.lower(), v) for n, v in [basic_header("alice", password_of("alice"))]]
GETS = 1000
POSTS = 200
# Streams open at once on the client's connection, so that a GOAWAY finds streams above its
# last stream id on the proxy's upstream connection.
CONCURRENT = 10


@pytest.fixture(scope="module")
def goaway_stack(
    pki: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Emulator, Proxy]]:
    workdir = tmp_path_factory.mktemp("goaway")
    emulator = start_emulator(pki, workdir, "-q", "--goaway-chance", "0.02")
    try:
        proxy = start_proxy_for(pki, workdir / "proxy", emulator.port)
        try:
            yield emulator, proxy
        finally:
            proxy.process.stop()
    finally:
        emulator.process.stop()


def h2_client(proxy: Proxy) -> H2Client:
    return H2Client(proxy.port, ssl.create_default_context(cafile=str(proxy.pki / "proxy-ca.crt")))


def test_a_thousand_gets_over_http2_with_goaway_chance_lose_none(
    goaway_stack: tuple[Emulator, Proxy],
) -> None:
    emulator, proxy = goaway_stack
    before = len(emulator.requests())
    statuses: collections.Counter[int] = collections.Counter()
    client = h2_client(proxy)
    try:
        for _ in range(GETS // CONCURRENT):
            streams = [client.request("GET", PODS, AUTH) for _ in range(CONCURRENT)]
            for stream in streams:
                response = client.response(stream)
                assert response.ended, f"stream {stream} reset ({response.reset})"
                statuses[response.status] += 1
                if response.status == 200:
                    assert response.data.startswith(b'{"kind":"PodList"')
    finally:
        client.close()
    print(f"\n{GETS} GETs over HTTP/2 with --goaway-chance=0.02: {dict(statuses)}")
    assert statuses == {200: GETS}
    served = [r for r in emulator.requests()[before:] if r["path"] == PODS]
    # Each GET was processed exactly once: none lost, none sent twice.
    assert len(served) == GETS
    assert {r["http_version"] for r in served} == {"HTTP/2.0"}
    # The proxy did meet GOAWAYs: it came back on new connections (about one per 50 requests).
    connections = {r["remote_addr"] for r in served}
    print(f"upstream connections: {len(connections)}")
    assert len(connections) > 5


def test_posts_refused_by_goaway_are_sent_again_and_processed_once(
    goaway_stack: tuple[Emulator, Proxy],
) -> None:
    """A stream above GOAWAY's last stream id was never processed: even a POST is sent again."""
    emulator, proxy = goaway_stack
    before = len(emulator.requests())
    body = b'{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}'
    headers = [*AUTH, ("content-type", "application/json")]
    statuses: collections.Counter[int] = collections.Counter()
    client = h2_client(proxy)
    try:
        for _ in range(POSTS // CONCURRENT):
            streams = [client.request("POST", REVIEW, headers, body) for _ in range(CONCURRENT)]
            for stream in streams:
                response = client.response(stream)
                statuses[response.status] += 1
                if response.status == 201:
                    assert b'"username":"alice"' in response.data
    finally:
        client.close()
    print(f"\n{POSTS} POSTs over HTTP/2 with --goaway-chance=0.02: {dict(statuses)}")
    assert statuses == {201: POSTS}
    served = [r for r in emulator.requests()[before:] if r["path"] == REVIEW]
    assert len(served) == POSTS
    assert "sent again: the API server sent GOAWAY" in proxy.process.output()


def test_a_401_followed_by_goaway_reaches_kubectl_as_unauthorized(
    pki: Path, tmp_path: Path
) -> None:
    """kube-apiserver answers an unauthenticated HTTP/2 request with its 401 and a GOAWAY (1.29
    and later). Here the proxy's front-proxy certificate is one the API server does not trust,
    so every request through it is unauthenticated upstream."""
    emulator = start_emulator(pki, tmp_path, "-q")
    try:
        proxy = start_proxy_for(
            pki, tmp_path / "proxy", emulator.port,
            upstream={"client_cert": str(pki / "proxy-server.crt"),
                      "client_key": str(pki / "proxy-server.key"),
                      "check_cluster_trust": False},
        )  # fmt: skip
        try:
            result = proxy.kubectl("get", "pods")
            again = proxy.kubectl("auth", "whoami")
        finally:
            proxy.process.stop()
    finally:
        emulator.process.stop()
    # What kubectl prints for kube-apiserver's 401 Status: its discovery's message for
    # `get`, the Status reason for `auth whoami`. Not "Error from server (BadGateway)".
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "error: You must be logged in to the server "
        "(the server has asked for the client to provide credentials)"
    ), result.stderr
    assert again.returncode == 1
    assert again.stderr.splitlines()[-1] == (
        "error: You must be logged in to the server (Unauthorized)"
    ), again.stderr
    upstream = emulator.requests()
    assert upstream and {(r["status"], r["http_version"]) for r in upstream} == {(401, "HTTP/2.0")}
