"""Request limits: head size (431), body size (413), both as Status bodies, nothing upstream.

The body limit follows kube-apiserver's MaxRequestBodyBytes (3 MiB by default,
k8s.io/apiserver/pkg/server/config.go); the head limit, Go's MaxHeaderBytes (431).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from kube_front_proxy.client.request_limits import body_too_large, head_too_large
from kube_front_proxy.config.errors import ConfigError
from kube_front_proxy.config.settings import load_settings
from tests.support.api_paths import PODS
from tests.support.configs import proxy_config, write_yaml
from tests.support.harness import Emulator, Proxy
from tests.support.http1 import read_response
from tests.support.users import basic_header, password_of

GOOD = basic_header("alice", password_of("alice"))
MIB = 1024 * 1024


def test_head_size() -> None:
    head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"  # 27 bytes
    assert not head_too_large(head, 27)
    assert head_too_large(head, 26)
    # A body after the head does not count; an unfinished head counts whole.
    assert not head_too_large(head + b"x" * 100, 27)
    assert head_too_large(b"GET / HTTP/1.1\r\nX: " + b"a" * 100, 50)
    assert not head_too_large(b"GET / HTTP/1.1\r\nX: a", 50)  # still arriving
    assert not head_too_large(b"GET / HTTP/1.1\nHost: x\n\n" + b"x" * 50, 25)  # bare LF, as h11


def test_body_size() -> None:
    assert body_too_large(3 * MIB + 1, 3 * MIB)
    assert not body_too_large(3 * MIB, 3 * MIB)
    assert not body_too_large(None, 1)


def config_with(tmp_path: Path, pki: Path, **overrides: Any) -> Path:
    return write_yaml(tmp_path / "config.yaml", proxy_config(pki, 6443, 8443, **overrides))


def test_limits_config(tmp_path: Path, pki: Path) -> None:
    settings = load_settings(config_with(tmp_path, pki))
    assert settings.max_request_head_bytes == 64 * 1024
    assert settings.max_request_body_bytes == 3 * MIB
    assert settings.upstream.response_timeout == 60
    settings = load_settings(
        config_with(
            tmp_path,
            pki,
            limits={"max_request_header_kb": 8, "max_request_body_mb": 10},
            upstream={"response_timeout_seconds": 0},
        )
    )
    assert (settings.max_request_head_bytes, settings.max_request_body_bytes) == (8192, 10 * MIB)
    assert settings.upstream.response_timeout == 0
    for overrides, message in [
        ({"limits": {"max_request_body_mb": 0}}, "limits.max_request_body_mb: must be at least 1"),
        ({"limits": {"max_request_header_kb": 0}}, "max_request_header_kb: must be at least 1"),
        ({"limits": {"max_body": 1}}, "max_body"),
        (
            {"upstream": {"response_timeout_seconds": -1}},
            "response_timeout_seconds: must be 0 or more",
        ),
    ]:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_settings(config_with(tmp_path, pki, **overrides))


def post_head(
    marker: str, length: int = 0, chunked: bool = False, auth: tuple[str, str] = GOOD
) -> bytes:
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}"
    return (
        f"POST {PODS}?{marker} HTTP/1.1\r\nHost: x\r\n{auth[0]}: {auth[1]}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()


def seen(emulator: Emulator, marker: str) -> list[dict[str, Any]]:
    """What the API server received with this marker (it also gets the proxy's /readyz checks)."""
    return [r for r in emulator.requests() if r["path"].endswith(marker)]


def test_headers_over_the_limit_get_a_431_status(limited: Proxy, emulator: Emulator) -> None:
    with limited.connect(timeout=10) as sock:
        sock.sendall(
            b"GET /version?big HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"a" * 9000 + b"\r\n\r\n"
        )
        status, headers, body = read_response(sock)
        assert sock.recv(1) == b""  # closed
    assert status == 431
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert body == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "the request headers are too large", "reason": "RequestEntityTooLarge",
        "code": 431,
    }  # fmt: skip
    # A head that never ends is refused as soon as it passes the limit, not buffered on.
    with limited.connect(timeout=10) as sock:
        sock.sendall(b"GET /version?endless HTTP/1.1\r\nX-Filler: " + b"a" * 9000)
        assert read_response(sock)[0] == 431
    # Just under the limit passes.
    headers_ok = [GOOD, ("X-Filler", "a" * 7000)]
    assert limited.raw("GET", "/version?small", headers_ok)[0] == 200
    assert seen(emulator, "?big") == seen(emulator, "?endless") == []
    assert len(seen(emulator, "?small")) == 1


def test_a_declared_body_over_the_limit_gets_a_413_before_it_is_sent(
    limited: Proxy, emulator: Emulator
) -> None:
    with limited.connect(timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(post_head("declared", 3 * MIB + 1))  # the body is never sent
        status, headers, body = read_response(sock)
        assert time.monotonic() - started < 2
    assert status == 413
    assert headers["content-type"] == "application/json"
    assert body["reason"] == "RequestEntityTooLarge"
    assert body["message"] == "the request is too large"
    assert seen(emulator, "?declared") == []


def test_a_chunked_body_over_the_limit_gets_a_413(limited: Proxy, emulator: Emulator) -> None:
    chunk = b"x" * 65536
    with limited.connect(timeout=10) as sock:
        sock.sendall(post_head("chunked", chunked=True))
        try:
            for _ in range(3 * 16 + 1):  # 3 MiB + 64 KiB
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except OSError:
            pass  # refused and closed while sending
        status, _, body = read_response(sock)
    assert status == 413
    assert body["code"] == 413
    assert seen(emulator, "?chunked") == []


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_bodies_within_the_limit_are_forwarded_whole(
    limited: Proxy, emulator: Emulator, chunked: bool
) -> None:
    size = 3 * MIB  # exactly the limit; over stream_large_bodies (1 MiB)
    marker = f"whole-{chunked}"
    with limited.connect(timeout=10) as sock:
        sock.sendall(post_head(marker, size, chunked))
        if chunked:
            for _ in range(size // MIB):
                sock.sendall(b"%x\r\n%s\r\n" % (MIB, b"x" * MIB))
            sock.sendall(b"0\r\n\r\n")
        else:
            sock.sendall(b"x" * size)
        status, _, _ = read_response(sock)
    assert status != 413
    [record] = seen(emulator, f"?{marker}")
    assert record["body_length"] == size


def test_a_refused_login_with_a_large_body_gets_its_401(limited: Proxy, emulator: Emulator) -> None:
    """A 2 MiB upload with a wrong password: mitmproxy cannot answer a request whose body it
    streams, so the proxy used to drop the connection with no answer at all."""
    wrong = basic_header("alice", "wrong")
    with limited.connect(timeout=10) as sock:
        sock.sendall(post_head("wrong", 2 * MIB, auth=wrong))
        sock.sendall(b"x" * 2 * MIB)
        status, _, body = read_response(sock)
    assert (status, body["reason"]) == (401, "Unauthorized")
    assert seen(emulator, "?wrong") == []
