"""Header hygiene: bytes the API server's HTTP stack refuses are refused at the proxy.

Go's net/http refuses a request whose target or header values carry a control character
(anything below 0x20 but HTAB, and DEL) with a 400; mitmproxy passed them on: a bare CR, a NUL,
an obs-folded line (kept as CR LF SP inside the value), ESC sequences in a User-Agent or a
path. The API server answers 400 today, but any backend that splits lines on a bare CR, or an
operator's terminal printing the audit log, would not be so careful. The proxy answers a 400
Status itself, before authentication and before anything is forwarded, over HTTP/1.1 and
HTTP/2, and no password stays in the flow.

Absolute-form targets (`GET https://evil:1234/api HTTP/1.1`) are accepted, as Go accepts them,
and sent upstream in origin-form: nothing of the client's authority (or scheme) reaches the API
server.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import io

from tests.support.harness import Emulator, Proxy, start_proxy_for
from tests.support.http1 import H1Connection
from tests.support.users import basic_header, password_of

PASSWORD = password_of("apr1-user")
AUTH = basic_header("apr1-user", PASSWORD)
BAD_REQUEST = "BadRequest"

# Values Go's httpguts.ValidHeaderFieldValue refuses (CTL but HTAB), each with a marker.
BAD_VALUES = {
    "bare-cr": "a\rX-Remote-User: admin",
    "nul": "a\x00b",
    "esc": "kubectl\x1b]0;owned\x07\x1b[2J",
    "del": "a\x7fb",
    "vt": "a\x0bb",
    "bs": "a\x08b",
}


@pytest.fixture(scope="module")
def hygiene(
    pki: Path, emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    workdir = tmp_path_factory.mktemp("hygiene")
    with start_proxy_for(
        pki, workdir, emulator.port, upstream={"check_cluster_trust": False}
    ) as proxy:
        yield proxy


def h1(proxy: Proxy, raw: bytes) -> tuple[int, dict[str, Any]]:
    conn = H1Connection(proxy.port, proxy.context())
    try:
        conn.send(raw)
        r = conn.response()
    finally:
        conn.close()
    assert r is not None
    return r.status, json.loads(r.body) if r.header("content-type") == "application/json" else {}


def arrived(emulator: Emulator, marker: str) -> list[dict[str, Any]]:
    return [r for r in emulator.requests() if marker in json.dumps(r)]


def assert_refused(status: int, body: dict[str, Any]) -> None:
    assert status == 400
    assert body["kind"] == "Status" and body["reason"] == BAD_REQUEST and body["code"] == 400


@pytest.mark.parametrize("name", BAD_VALUES)
def test_a_control_character_in_a_header_value_is_a_400_over_http1(
    hygiene: Proxy, emulator: Emulator, name: str
) -> None:
    proxy = hygiene
    marker = uuid.uuid4().hex
    raw = (f"GET /version?{marker} HTTP/1.1\r\nHost: x\r\n{AUTH[0]}: {AUTH[1]}\r\n"
           f"User-Agent: {BAD_VALUES[name]}\r\n\r\n").encode()  # fmt: skip
    assert_refused(*h1(proxy, raw))
    assert not arrived(emulator, marker)


def test_an_obs_folded_header_is_a_400(hygiene: Proxy, emulator: Emulator) -> None:
    proxy = hygiene
    marker = uuid.uuid4().hex
    raw = (f"GET /version?{marker} HTTP/1.1\r\nHost: x\r\n{AUTH[0]}: {AUTH[1]}\r\n"
           "X-Note: a\r\n X-Remote-User: admin\r\n\r\n").encode()  # fmt: skip
    assert_refused(*h1(proxy, raw))
    assert not arrived(emulator, marker)


@pytest.mark.parametrize("target", ["/version?{m}\x1b[2J", "/version\x7f?{m}", "/ver\x01sion?{m}"])
def test_a_control_character_in_the_request_target_is_a_400(
    hygiene: Proxy, emulator: Emulator, target: str
) -> None:
    proxy = hygiene
    marker = uuid.uuid4().hex
    path = target.format(m=marker)
    raw = f"GET {path} HTTP/1.1\r\nHost: x\r\n{AUTH[0]}: {AUTH[1]}\r\n\r\n".encode()
    assert_refused(*h1(proxy, raw))
    assert not arrived(emulator, marker)


def h2_request(proxy: Proxy, path: str, headers: list[tuple[str, str]]) -> tuple[int, bytes]:
    client = proxy.h2("localhost")
    try:
        sid = client.request("GET", path, [(AUTH[0].lower(), AUTH[1]), *headers], validate=False)
        r = client.response(sid)
    finally:
        client.close()
    return r.status, bytes(r.data)


@pytest.mark.parametrize("name", BAD_VALUES)
def test_a_control_character_in_a_header_value_is_refused_over_http2(
    hygiene: Proxy, emulator: Emulator, name: str
) -> None:
    proxy = hygiene
    marker = uuid.uuid4().hex
    status, data = h2_request(proxy, f"/version?{marker}", [("user-agent", BAD_VALUES[name])])
    if name in ("bare-cr", "nul"):
        # HTTP/2 forbids CR, LF and NUL outright: the h2 stack ends the connection
        # (PROTOCOL_ERROR) before any hook runs (RFC 9113 8.2.1).
        assert status in (0, 400)
    else:
        assert_refused(status, json.loads(data))
    assert not arrived(emulator, marker)


@pytest.mark.parametrize("target", ["/version?{m}\x1b[2J", "https://evil:1234/version?{m}", "*"])
def test_an_http2_path_that_is_not_origin_form_or_has_controls_is_a_400(
    hygiene: Proxy, emulator: Emulator, target: str
) -> None:
    proxy = hygiene
    marker = uuid.uuid4().hex
    status, data = h2_request(proxy, target.format(m=marker), [])
    assert_refused(status, json.loads(data))
    assert not arrived(emulator, marker)


@pytest.mark.parametrize("scheme", ["https", "http", "HTTPS"])
def test_an_absolute_form_target_goes_upstream_in_origin_form(
    hygiene: Proxy, emulator: Emulator, scheme: str
) -> None:
    proxy = hygiene
    marker = uuid.uuid4().hex
    raw = (f"GET {scheme}://evil.example:1234/version?{marker} HTTP/1.1\r\n"
           f"Host: evil.example:1234\r\n{AUTH[0]}: {AUTH[1]}\r\n\r\n").encode()  # fmt: skip
    status, body = h1(proxy, raw)
    assert status == 200 and body["major"] == "1"
    [record] = arrived(emulator, marker)
    assert record["path"] == f"/version?{marker}"
    assert record["authentication"]["user"]["username"] == "apr1-user"
    assert "evil" not in json.dumps(record)
    assert [v for n, v in record["headers"] if n.lower() == "host"] == [
        f"127.0.0.1:{emulator.port}"
    ]


def test_refused_requests_leave_no_password_in_the_flows(
    pki: Path, emulator: Emulator, tmp_path: Path
) -> None:
    flows = tmp_path / "flows.mitm"
    proxy = start_proxy_for(pki, tmp_path, emulator.port, "-w", str(flows),
                            upstream={"check_cluster_trust": False})  # fmt: skip
    try:
        raw = (f"GET /version HTTP/1.1\r\nHost: x\r\n{AUTH[0]}: {AUTH[1]}\r\n"
               f"User-Agent: {BAD_VALUES['esc']}\r\n\r\n").encode()  # fmt: skip
        assert_refused(*h1(proxy, raw))
        status, data = h2_request(proxy, "/version", [("user-agent", BAD_VALUES["esc"])])
        assert_refused(status, json.loads(data))
    finally:
        proxy.process.stop()
    with flows.open("rb") as f:
        saved = list(io.FlowReader(f).stream())
    assert len(saved) == 2
    assert all(f.response and f.response.status_code == 400 for f in saved)  # type: ignore[attr-defined]
    assert PASSWORD.encode() not in flows.read_bytes()
    assert AUTH[1].split()[1].encode() not in flows.read_bytes()
    assert PASSWORD not in proxy.process.output()
