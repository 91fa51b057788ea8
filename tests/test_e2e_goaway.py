"""End to end: the API server's HTTP/2 GOAWAY loses no response (RFC 9113 section 6.8).

kube-apiserver sends GOAWAY with `--goaway-chance`, after every unauthenticated HTTP/2 request
(1.29 and later) and when it shuts down gracefully; the emulator does the same (see its
README). Streams up to the GOAWAY's last stream id are answered and their answers must reach
the client; streams above it were never processed and the proxy sends them again on a new
connection, whatever their method.
"""

from __future__ import annotations

import collections
import http.client
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.api_paths import PODS, SSR
from tests.support.harness import Emulator, Proxy, start_emulator, start_proxy_for, watch_requests
from tests.support.http2 import H2Client
from tests.support.processes import KUBECTL
from tests.support.users import basic_header, password_of
from tests.support.waiting import wait_until

AUTH = [(n.lower(), v) for n, v in [basic_header("alice", password_of("alice"))]]
REVIEW_BODY = b'{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}'
JSON = ("content-type", "application/json")
GETS = 1000
POSTS = 200
# Streams open at once on the client's connection, so that a GOAWAY finds streams above its
# last stream id on the proxy's upstream connection.
CONCURRENT = 20


@pytest.fixture(scope="module")
def goaway_stack(
    pki: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Emulator, Proxy]]:
    workdir = tmp_path_factory.mktemp("goaway")
    with (
        start_emulator(pki, workdir, "-q", "--goaway-chance", "0.02") as emulator,
        start_proxy_for(pki, workdir / "proxy", emulator.port) as proxy,
    ):
        yield emulator, proxy


def answer(client: H2Client, stream: int) -> tuple[int, bytes]:
    """The stream's status and body; status -1 for a response that never came, or was cut."""
    try:
        response = client.response(stream, timeout=10)
    except TimeoutError:
        return -1, b""
    return (response.status if response.ended else -1), bytes(response.data)


def test_a_thousand_gets_over_http2_with_goaway_chance_lose_none(
    goaway_stack: tuple[Emulator, Proxy],
) -> None:
    emulator, proxy = goaway_stack
    before = len(emulator.requests())
    statuses: collections.Counter[int] = collections.Counter()
    client = proxy.h2()
    try:
        for _ in range(GETS // CONCURRENT):
            streams = [client.request("GET", PODS, AUTH) for _ in range(CONCURRENT)]
            for stream in streams:
                status, body = answer(client, stream)
                statuses[status] += 1
                if status == 200:
                    assert body.startswith(b'{"kind":"PodList"')
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
    body = REVIEW_BODY
    headers = [*AUTH, JSON]
    statuses: collections.Counter[int] = collections.Counter()
    client = proxy.h2()
    try:
        for _ in range(POSTS // CONCURRENT):
            streams = [client.request("POST", SSR, headers, body) for _ in range(CONCURRENT)]
            for stream in streams:
                status, body = answer(client, stream)
                statuses[status] += 1
                if status == 201:
                    assert b'"username":"alice"' in body
    finally:
        client.close()
    print(f"\n{POSTS} POSTs over HTTP/2 with --goaway-chance=0.02: {dict(statuses)}")
    assert statuses == {201: POSTS}
    served = [r for r in emulator.requests()[before:] if r["path"] == SSR]
    assert len(served) == POSTS
    # Whether a GOAWAY finds a POST in flight above its last stream id is chance: the emulator
    # has usually taken all of a batch. The GETs above show requests being sent again; here
    # what matters is that none is lost or processed twice.


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


class H2Load(threading.Thread):
    """Requests over one HTTP/2 connection to the proxy until stopped: batches of four GETs and
    one POST (a SelfSubjectReview) at a time. A 503 with Retry-After (kube-apiserver's
    WithWaitGroup while it shuts down) is retried once, as client-go does; counted apart."""

    def __init__(self, proxy: Proxy) -> None:
        super().__init__(daemon=True)
        self.proxy = proxy
        self.stop = threading.Event()
        self.statuses: dict[str, collections.Counter[int]] = {
            "GET": collections.Counter(),
            "POST": collections.Counter(),
        }
        self.retried_503 = 0
        self.error: BaseException | None = None

    def done(self) -> int:
        return sum(self.statuses["GET"].values())

    def run(self) -> None:
        client = self.proxy.h2()
        try:
            while not self.stop.is_set():
                batch = [*(["GET"] * 4), "POST"]
                streams = [(method, self._send(client, method)) for method in batch]
                for method, stream in streams:
                    response = client.response(stream)
                    if response.status == 503 and response.header("retry-after"):
                        self.retried_503 += 1
                        response = client.response(self._send(client, method))
                    self.statuses[method][response.status if response.ended else -1] += 1
        except BaseException as e:  # reported by the test
            self.error = e
        finally:
            client.close()

    @staticmethod
    def _send(client: H2Client, method: str) -> int:
        if method == "GET":
            return client.request("GET", PODS, AUTH)
        return client.request("POST", SSR, [*AUTH, JSON], REVIEW_BODY)


def test_a_rolling_restart_loses_no_get_and_ends_the_watch_cleanly(
    pki: Path, tmp_path: Path
) -> None:
    """One of two API servers restarts as kube-apiserver does on SIGTERM: /readyz fails, the
    listener closes, HTTP/2 connections get GOAWAY and close once their streams are done, and
    what is still open after --request-timeout (the watch) is cut. The proxy sends the streams
    above the GOAWAY again, on the other server, and ends the cut watch as a watch ends."""
    # Every answer takes 0.2 s, so that requests are in flight when the GOAWAY comes.
    flags = ["-q", "--request-timeout", "3s", "--response-delay", "0.2"]
    emulators = [start_emulator(pki, tmp_path / f"emulator-{i}", *flags) for i in (0, 1)]
    proxy = start_proxy_for(
        pki, tmp_path / "proxy", emulators[0].port,
        upstream={
            "servers": [f"https://127.0.0.1:{e.port}" for e in emulators],
            "health_check": {"interval_seconds": 1, "timeout_seconds": 1},
            "eject_seconds": 2,
        },
    )  # fmt: skip
    watch = subprocess.Popen(
        [KUBECTL, "--kubeconfig", str(proxy.kubeconfig("alice")), "get", "pods", "-w"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    load = H2Load(proxy)
    restarted: Emulator | None = None
    try:
        wait_until(lambda: any(watch_requests(e) for e in emulators))
        i = next(i for i, e in enumerate(emulators) if watch_requests(e))
        load.start()
        wait_until(lambda: load.done() > 50)
        emulators[i].process.proc.send_signal(signal.SIGTERM)
        emulators[i].process.proc.wait(15)
        done_before_restart = load.done()
        restarted = start_emulator(
            pki, tmp_path / "restarted", *flags, "--secure-port", str(emulators[i].port)
        )
        # Back in the rotation once its /readyz passes.
        wait_until(lambda: sum(r["path"] == PODS for r in restarted.requests()) > 10, 15)
        load.stop.set()
        load.join(30)
        out, err = watch.communicate(timeout=15)
    finally:
        load.stop.set()
        watch.kill()
        proxy.process.stop()
        for emulator in [*emulators, *([restarted] if restarted else [])]:
            emulator.process.stop()
    gets, posts = (sum(load.statuses[m].values()) for m in ("GET", "POST"))
    print(
        f"\nrolling restart: {gets} GETs ({done_before_restart} before the restart) and "
        f"{posts} POSTs: {load.statuses}, 503 Retry-After retried: {load.retried_503}"
    )
    assert load.error is None, repr(load.error)
    assert load.statuses == {"GET": {200: gets}, "POST": {201: posts}}
    # The watch was cut as the server exited: kubectl saw a watch end, not an error.
    assert (watch.returncode, err) == (0, "")
    assert [line.split()[0] for line in out.splitlines()] == ["NAME", "nginx-1", "nginx-2"]


def test_upstream_connections_closed_for_idleness_are_replaced_quietly(
    pki: Path, tmp_path: Path
) -> None:
    """kube-apiserver closes a kept-alive connection idle for 90 s (here 2 s): HTTP/1.1 by
    closing it, HTTP/2 with GOAWAY. The next requests, a POST among them, open a new one."""
    emulator = start_emulator(pki, tmp_path, "-q", "--idle-timeout", "2s")
    proxy = start_proxy_for(pki, tmp_path / "proxy", emulator.port)
    context = proxy.context()
    http1 = http.client.HTTPSConnection("127.0.0.1", proxy.port, context=context, timeout=10)
    h2 = proxy.h2()
    auth = dict(AUTH)
    try:
        answers = []
        for round_ in range(2):
            if round_:
                time.sleep(3)  # idle for longer than the API server's timeout
            for method, path in (("GET", PODS), ("POST", SSR)):
                body = REVIEW_BODY if method == "POST" else None
                http1.request(method, path, body, {**auth, JSON[0]: JSON[1]})
                response = http1.getresponse()
                response.read()
                answers.append(response.status)
                headers = [*AUTH, JSON] if body else AUTH
                answers.append(h2.response(h2.request(method, path, headers, body or b"")).status)
    finally:
        http1.close()
        h2.close()
        proxy.process.stop()
        emulator.process.stop()
    assert answers == [200, 200, 201, 201] * 2
    served = emulator.requests()
    by_version = collections.Counter(
        (r["http_version"], r["remote_addr"]) for r in served if r["path"] in (PODS, SSR)
    )
    # Two upstream connections per protocol: the first, closed for idleness, then its successor.
    assert collections.Counter(v for v, _ in by_version) == {"HTTP/1.1": 2, "HTTP/2.0": 2}
