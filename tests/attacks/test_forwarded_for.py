"""Forged client addresses: the audit trail must blame the real client.

kube-apiserver's audit `sourceIPs` start with X-Forwarded-For, then X-Real-Ip, then the
connection's address (the proxy's). A client that sends its own X-Forwarded-For or X-Real-Ip
must not choose what the API server records: the proxy replaces them with the TCP peer's
address. The client connects from 127.0.0.2, so its address is not the proxy's (127.0.0.1).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.harness import Emulator, Proxy, start_proxy_for
from tests.support.users import basic_header, password_of

CLIENT = "127.0.0.2"
FORGED = [
    ("X-Forwarded-For", "6.6.6.6"),
    ("x-forwarded-for", "6.6.6.7, 6.6.6.8"),
    ("X-Real-Ip", "7.7.7.7"),
    ("X-REAL-IP", "7.7.7.8"),
    ("Forwarded", "for=8.8.8.8"),
]
ADDRESS_HEADERS = {"x-forwarded-for", "x-real-ip", "forwarded"}


@pytest.fixture(scope="module")
def audited(
    pki: Path, emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    workdir = tmp_path_factory.mktemp("forwarded")
    with start_proxy_for(pki, workdir, emulator.port,
                         audit={"path": str(workdir / "audit.log")}) as proxy:  # fmt: skip
        yield proxy


def _address_headers(record: dict[str, Any]) -> list[list[str]]:
    return [[n, v] for n, v in record["headers"] if n.lower() in ADDRESS_HEADERS]


def _audit_events(proxy: Proxy) -> list[dict[str, Any]]:
    text = (proxy.workdir / "audit.log").read_text()
    return [json.loads(line) for line in text.splitlines()]


def test_http1_forged_addresses_are_replaced_by_the_real_one(
    audited: Proxy, emulator: Emulator
) -> None:
    before = len(emulator.requests())
    assert _get_api(audited, password_of("alice")).startswith(b"HTTP/1.1 200 ")
    [record] = [r for r in emulator.requests()[before:] if r["path"] == "/api"]
    assert record["source_ips"] == [CLIENT, "127.0.0.1"]
    assert _address_headers(record) == [["X-Forwarded-For", CLIENT]]


def test_http2_forged_addresses_are_replaced_by_the_real_one(
    audited: Proxy, emulator: Emulator
) -> None:
    auth = basic_header("alice", password_of("alice"))
    client = audited.h2(source=CLIENT)
    try:
        before = len(emulator.requests())
        forged = [(n.lower(), v) for n, v in FORGED]
        stream = client.request("GET", "/api", [(auth[0].lower(), auth[1]), *forged])
        assert client.response(stream).status == 200
    finally:
        client.close()
    [record] = [r for r in emulator.requests()[before:] if r["path"] == "/api"]
    assert record["source_ips"] == [CLIENT, "127.0.0.1"]
    assert _address_headers(record) == [["x-forwarded-for", CLIENT]]


def _get_api(proxy: Proxy, password: str) -> bytes:
    auth = basic_header("alice", password)
    head = "".join(f"{n}: {v}\r\n" for n, v in [auth, *FORGED])
    request = f"GET /api HTTP/1.1\r\nHost: x\r\n{head}Connection: close\r\n\r\n".encode()
    return proxy.exchange(request, source=CLIENT)


def test_the_proxys_own_audit_log_records_the_real_address(audited: Proxy) -> None:
    assert _get_api(audited, password_of("alice")).startswith(b"HTTP/1.1 200 ")
    assert _get_api(audited, "wrong").startswith(b"HTTP/1.1 401 ")
    events = _audit_events(audited)
    assert {e["user"]["username"] for e in events} == {"alice"}
    assert len(events) >= 2 and {tuple(e["sourceIPs"]) for e in events} == {(CLIENT,)}
