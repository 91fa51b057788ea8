"""End to end with two API-server emulators behind one proxy: failover, retries, balancing.

Each test gets two fresh emulators (it may kill them) and a proxy with fast health checks.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.api_paths import PODS, SSR
from tests.support.harness import Emulator, Proxy, start_emulator, start_proxy_for, watch_requests
from tests.support.http1 import raw_request
from tests.support.processes import KUBECTL
from tests.support.users import basic_header, password_of
from tests.support.waiting import wait_until

AUTH = basic_header("alice", password_of("alice"))
STATUS_PREFIX = b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
NO_SERVER = STATUS_PREFIX + (
    b'"message":"no Kubernetes API server is available","reason":"ServiceUnavailable","code":503}\n'
)
BAD_GATEWAY = STATUS_PREFIX + (
    b'"message":"the Kubernetes API server could not be reached","reason":"BadGateway",'
    b'"code":502}\n'
)
CHECK_INTERVAL = 1


@dataclass
class Pair:
    """Two emulators, their fault switches, and the proxy in front of both."""

    emulators: list[Emulator]
    proxy: Proxy
    workdir: Path
    mark: list[int] = field(default_factory=lambda: [0, 0])

    def slow(self, i: int, seconds: float) -> None:
        (self.workdir / f"delay-{i}").write_text(str(seconds))

    def not_ready(self, i: int, on: bool) -> None:
        flag = self.workdir / f"not-ready-{i}"
        if on:
            flag.touch()
        else:
            flag.unlink()

    def kill(self, i: int) -> None:
        os.killpg(self.emulators[i].process.proc.pid, signal.SIGKILL)
        self.emulators[i].process.proc.wait()

    def since_mark(self, i: int, method: str = "GET", path: str = PODS) -> int:
        """Requests for method and path (query ignored) emulator i got since mark()."""
        records = self.emulators[i].requests()[self.mark[i] :]
        return sum(1 for r in records if r["method"] == method and r["path"] == path)

    def checked(self, i: int) -> None:
        """Wait until the proxy has acted on emulator i's state as it is now: two of its
        health checks arrived after this call, so the first of them has been answered."""
        probes = self.emulators[i].requests
        before = sum(1 for r in probes() if r["path"] == "/readyz")
        wait_until(lambda: sum(1 for r in probes() if r["path"] == "/readyz") >= before + 2)

    def set_mark(self) -> None:
        self.mark = [len(e.requests()) for e in self.emulators]

    def upstream_authorities(self) -> list[bytes]:
        return [f"127.0.0.1:{e.port}".encode() for e in self.emulators]


@pytest.fixture
def pair(pki: Path, tmp_path: Path) -> Iterator[Pair]:
    emulators = [
        start_emulator(
            pki,
            tmp_path / f"emulator-{i}",
            "-q",
            "--response-delay-file",
            str(tmp_path / f"delay-{i}"),
            "--not-ready-file",
            str(tmp_path / f"not-ready-{i}"),
        )
        for i in range(2)
    ]
    proxy = start_proxy_for(
        pki,
        tmp_path / "proxy",
        emulators[0].port,
        upstream={
            "servers": [f"https://127.0.0.1:{e.port}" for e in emulators],
            "health_check": {"interval_seconds": CHECK_INTERVAL, "timeout_seconds": 1},
            "eject_seconds": 2,
        },
    )
    yield Pair(emulators, proxy, tmp_path)
    proxy.process.stop()
    for emulator in emulators:
        emulator.process.stop()


def get(proxy: Proxy, path: str = PODS, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    body = b'{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}'
    headers = [AUTH, ("Content-Type", "application/json")] if method == "POST" else [AUTH]
    return proxy.raw(method, path, headers, body if method == "POST" else None)


def proxy_context(proxy: Proxy) -> ssl.SSLContext:
    return proxy.context()


class Looper(threading.Thread):
    """GETs in a loop, on one kept-alive connection or a new one per request."""

    def __init__(self, proxy: Proxy, keep_alive: bool) -> None:
        super().__init__(daemon=True)
        self.proxy = proxy
        self.keep_alive = keep_alive
        self.stop = threading.Event()
        self.results: list[tuple[float, float, int]] = []  # start, seconds, status

    def run(self) -> None:
        context = proxy_context(self.proxy)
        conn: http.client.HTTPSConnection | None = None
        while not self.stop.is_set():
            start = time.monotonic()
            try:
                if not self.keep_alive:
                    status, _, _ = raw_request(
                        "127.0.0.1", self.proxy.port, context, "GET", PODS, [AUTH]
                    )
                else:
                    if conn is None:
                        conn = http.client.HTTPSConnection(
                            "127.0.0.1", self.proxy.port, context=context, timeout=30
                        )
                    conn.request("GET", PODS, headers=dict([AUTH]))
                    response = conn.getresponse()
                    response.read()
                    status = response.status
            except (OSError, http.client.HTTPException):
                status = 0
                conn = None
            self.results.append((start, time.monotonic() - start, status))


def answered(loopers: list[Looper]) -> int:
    return sum(len(looper.results) for looper in loopers)


def test_killing_one_server_loses_no_idempotent_request(pair: Pair) -> None:
    loopers = [Looper(pair.proxy, keep_alive) for keep_alive in (True, False, True, False)]
    for looper in loopers:
        looper.start()
    wait_until(lambda: answered(loopers) > 40)
    pair.set_mark()
    killed_at = time.monotonic()
    pair.kill(0)
    since = answered(loopers)
    wait_until(lambda: answered(loopers) > since + 80, 20)
    for looper in loopers:
        looper.stop.set()
        looper.join(10)
    results = [r for looper in loopers for r in looper.results]
    assert [r for r in results if r[2] != 200] == []
    before = [r for r in results if r[0] < killed_at]
    after = [r for r in results if r[0] >= killed_at]
    assert len(before) > 20 and len(after) > 40
    # Every request after the kill went to the survivor.
    assert pair.since_mark(1) >= len(after)
    around = [r[1] for r in results if r[0] + r[1] >= killed_at]
    print(f"\nrequests {len(results)}, after kill {len(after)}, slowest after {max(around):.3f}s")
    assert max(around) < 1.0
    assert "retried on 127.0.0.1:" in pair.proxy.process.output()


def test_request_waiting_on_a_killed_server_get_retried_post_not(pair: Pair) -> None:
    # Park one GET and one POST on server 0: server 1 not ready, server 0 slow.
    pair.not_ready(1, True)
    wait_until(lambda: get(pair.proxy)[0] == 200 and pair.since_mark(1) == 0, 5)
    pair.checked(1)
    pair.slow(0, 30)
    pair.set_mark()
    answers: dict[str, tuple[int, dict[str, str], bytes]] = {}
    threads = [
        threading.Thread(target=lambda: answers.__setitem__("GET", get(pair.proxy))),
        threading.Thread(target=lambda: answers.__setitem__("POST", get(pair.proxy, SSR, "POST"))),
    ]
    for t in threads:
        t.start()
    wait_until(lambda: pair.since_mark(0) == 1 and pair.since_mark(0, "POST", SSR) == 1)
    pair.not_ready(1, False)
    pair.checked(1)
    pair.kill(0)
    for t in threads:
        t.join(10)
    assert answers["GET"][0] == 200
    assert answers["POST"][:1] == (502,)
    assert answers["POST"][2] == BAD_GATEWAY
    assert pair.since_mark(1) == 1
    assert pair.since_mark(1, "POST", SSR) == 0
    assert pair.since_mark(0, "POST", SSR) == 1


def open_watch(proxy: Proxy) -> tuple[ssl.SSLSocket, bytes]:
    """A raw HTTP/1.1 watch through the proxy; returns the socket and the response head."""
    sock = proxy_context(proxy).wrap_socket(
        socket.create_connection(("127.0.0.1", proxy.port), timeout=10), server_hostname="127.0.0.1"
    )
    sock.sendall(
        f"GET {PODS}?watch=true HTTP/1.1\r\nHost: x\r\n{AUTH[0]}: {AUTH[1]}\r\n\r\n".encode()
    )
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    return sock, data


def test_a_watch_on_a_killed_server_ends_cleanly(pair: Pair) -> None:
    pair.not_ready(1, True)
    pair.checked(1)
    sock, data = open_watch(pair.proxy)
    assert data.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in data.lower()
    wait_until(lambda: pair.since_mark(0, path=f"{PODS}?watch=true") == 1)
    pair.not_ready(1, False)
    pair.checked(1)
    pair.kill(0)
    while not data.endswith(b"\r\n0\r\n\r\n"):
        chunk = sock.recv(65536)
        assert chunk, f"closed without the last chunk: {data[-80:]!r}"
        data += chunk
    # The connection is still good: the watch ended, not the connection.
    sock.sendall(f"GET {PODS} HTTP/1.1\r\nHost: x\r\n{AUTH[0]}: {AUTH[1]}\r\n\r\n".encode())
    assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    sock.close()


def test_a_slow_server_gets_less_traffic(pair: Pair) -> None:
    pair.slow(0, 0.2)
    pair.set_mark()
    loopers = [Looper(pair.proxy, keep_alive=True) for _ in range(6)]
    for looper in loopers:
        looper.start()
    wait_until(lambda: answered(loopers) > 150, 20)
    for looper in loopers:
        looper.stop.set()
        looper.join(10)
    slow, fast = pair.since_mark(0), pair.since_mark(1)
    print(f"\nslow server {slow} requests, fast server {fast}")
    assert all(r[2] == 200 for looper in loopers for r in looper.results)
    assert slow < 0.25 * (slow + fast)  # round robin: half


def test_both_down_is_a_clean_503_that_names_no_address(pair: Pair) -> None:
    status, _, body = get(pair.proxy, "/api")
    assert status == 200
    for authority in pair.upstream_authorities():
        assert authority not in body
    assert f'"serverAddress":"127.0.0.1:{pair.proxy.port}"'.encode() in body
    pair.kill(0)
    pair.kill(1)
    status, headers, body = get(pair.proxy)
    # Until the proxy knows: the connection attempts fail (502); then it answers itself (503).
    assert (status, body) in ((502, BAD_GATEWAY), (503, NO_SERVER))
    wait_until(lambda: get(pair.proxy)[0] == 503)  # both health checks failed
    status, headers, body = get(pair.proxy)
    assert (status, body) == (503, NO_SERVER)
    assert headers["Content-Type"] == "application/json"
    for authority in pair.upstream_authorities():
        assert authority not in body and all(authority not in v.encode() for v in headers.values())


def serving_watch(pair: Pair) -> int:
    """The emulator a kubectl watch went to, once it has one."""
    wait_until(lambda: any(watch_requests(e) for e in pair.emulators))
    return next(i for i, e in enumerate(pair.emulators) if watch_requests(e))


def test_kubectl_watching_through_a_killed_server_watches_again_on_the_survivor(
    pair: Pair,
) -> None:
    """A reflector (client-go tools/cache/reflector.go, here under `kubectl wait`, which uses
    watchtools.UntilWithSync) reads the clean end as the server ending the watch and watches
    again: through the proxy that lands on the survivor. (`kubectl get -w` uses
    UntilWithoutRetry instead and exits 0 at any watch end, from the API server too.)"""
    output = pair.workdir / "kubectl-wait.out"
    kubectl = subprocess.Popen(
        [KUBECTL, "--kubeconfig", str(pair.proxy.kubeconfig("alice")), "wait",
         "--for=condition=NeverTrue", "pod/nginx-1", "--timeout=60s"],
        stdout=output.open("wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        killed = serving_watch(pair)
        survivor = 1 - killed
        # reflector.go warns about a watch that ends within a second ("very short watch").
        time.sleep(1.5)  # the scenario: a watch that has lasted a while
        pair.set_mark()
        pair.kill(killed)
        wait_until(lambda: watch_requests(pair.emulators[survivor], pair.mark[survivor]) != [])
        [path] = watch_requests(pair.emulators[survivor], pair.mark[survivor])
        assert path.startswith(f"{PODS}?allowWatchBookmarks=true&fieldSelector=metadata.name%3D")
        time.sleep(1)  # the scenario: a while in which kubectl must not give up
        assert kubectl.poll() is None
        # Not even a warning: the reflector saw a watch end, not an error (reflector.go logs
        # "watch of ... ended with: an error on the server" for a reset stream).
        assert output.read_text() == ""
    finally:
        kubectl.kill()
        kubectl.wait()


def test_kubectl_get_watch_ends_quietly_when_its_server_is_killed(pair: Pair) -> None:
    kubectl = subprocess.Popen(
        [KUBECTL, "--kubeconfig", str(pair.proxy.kubeconfig("alice")), "get", "pods", "-w"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        pair.kill(serving_watch(pair))
        out, err = kubectl.communicate(timeout=30)
        # As when kube-apiserver ends a watch: no error, exit 0 (not "unexpected EOF").
        assert (kubectl.returncode, err) == (0, "")
        # The pods and nothing else: a cut stream would add an InternalError Status row.
        assert [line.split()[0] for line in out.splitlines()] == ["NAME", "nginx-1", "nginx-2"]
    finally:
        kubectl.kill()
        kubectl.wait()


def test_a_server_that_times_out_is_ejected(pki: Path, tmp_path: Path) -> None:
    emulators = [
        start_emulator(pki, tmp_path / f"emulator-{i}", "-q", *flags)
        for i, flags in enumerate([["--response-delay", "3"], []])
    ]
    proxy = start_proxy_for(
        pki, tmp_path / "proxy", emulators[0].port,
        upstream={
            "servers": [f"https://127.0.0.1:{e.port}" for e in emulators],
            "balance": "round_robin", "response_timeout_seconds": 1, "eject_seconds": 30,
            "health_check": {"interval_seconds": 0}, "check_cluster_trust": False,
        },
    )  # fmt: skip
    try:
        status, _, body = get(proxy)
        assert (status, json.loads(body)["reason"]) == (504, "Timeout")
        # Round robin would send every other request to the hung server again.
        assert [get(proxy)[0] for _ in range(4)] == [200] * 4
        pods = [sum(r["path"] == PODS for r in e.requests()) for e in emulators]
        assert pods == [1, 4]
        assert "ejected for 30s after 1 failure(s)" in proxy.process.output()
    finally:
        proxy.process.stop()
        for emulator in emulators:
            emulator.process.stop()
