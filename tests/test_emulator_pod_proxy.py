"""The emulator's pods/proxy: the pod's nginx answer, passed through as the API server does."""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import pytest

from tests.emulator import EmulatorServer
from tests.emulator.api import API
from tests.emulator.container import INDEX_HTML
from tests.support.emulator_pki import EmulatorPKI, kubeadm_config, request
from tests.support.http1 import H1Response

POD = "/api/v1/namespaces/default/pods/nginx-1"
ALICE = [("X-Remote-User", "alice"), ("X-Remote-Group", "system:masters")]


@pytest.fixture(scope="module")
def api() -> API:
    return API()


@pytest.fixture(scope="module")
def pki(emulator_pki: EmulatorPKI) -> EmulatorPKI:
    return emulator_pki


@pytest.fixture(scope="module")
def server(pki: EmulatorPKI, api: API) -> Iterator[EmulatorServer]:
    with EmulatorServer(kubeadm_config(pki), api=api) as server:
        yield server


def get(server: EmulatorServer, pki: EmulatorPKI, path: str, *extra: tuple[str, str]) -> H1Response:
    cert = (pki.path("front-proxy-client.crt"), pki.path("front-proxy-client.key"))
    return request(server, pki, "GET", path, [*ALICE, *extra], cert=cert)


def test_the_pods_web_root_through_pods_proxy(
    server: EmulatorServer,
    pki: EmulatorPKI,
) -> None:
    for path in (f"{POD}/proxy/", f"{POD}:80/proxy/index.html"):
        answer = get(server, pki, path)
        assert (answer.status, answer.body) == (200, INDEX_HTML)
        assert answer.header("Content-Type") == "text/html"
        assert answer.header("Server") == "nginx/1.27.0"
        assert answer.header("Connection") is None  # hop-by-hop: not passed on
    missing = get(server, pki, f"{POD}/proxy/nothing.json")
    assert (missing.status, missing.body) == (404, b"not found\n")


def test_gzip_static_bodies_pass_through_encoded_with_their_length(
    server: EmulatorServer,
    pki: EmulatorPKI,
    api: API,
) -> None:
    body = b'{"items":[' + b'"x",' * 5000 + b'"y"]}'
    packed = gzip.compress(body)
    api.container(api.pods[0]).fs.write("/usr/share/nginx/html/data.json.gz", packed)
    answer = get(server, pki, f"{POD}/proxy/data.json", ("Accept-Encoding", "gzip"))
    assert (answer.status, answer.body) == (200, packed)
    assert answer.header("Content-Encoding") == "gzip"
    assert answer.header("Content-Type") == "application/json"
    # The pod's Content-Length, as Go keeps a handler's: no chunking of a 2 KiB+ body.
    assert answer.header("Content-Length") == str(len(packed))
    assert answer.header("Transfer-Encoding") is None
    # Without gzip in Accept-Encoding nginx has no plain data.json to serve.
    assert get(server, pki, f"{POD}/proxy/data.json").status == 404


def test_a_port_nothing_listens_on_is_a_503_status(
    server: EmulatorServer,
    pki: EmulatorPKI,
) -> None:
    answer = get(server, pki, f"{POD}:81/proxy/")
    assert answer.status == 503
    assert b'"reason":"ServiceUnavailable"' in answer.body
    assert b"dial tcp 10.244.0.11:81: connect: connection refused" in answer.body
