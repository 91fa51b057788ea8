"""The emulator's delayed watch events (`--watch-event-interval`), over HTTP/1.1 and HTTP/2.

A pod watch sends its ADDED events at once, then a MODIFIED event for nginx-1 every interval,
each with the next resourceVersion and its send time in the `emulator.kube-front-proxy/sent-at`
annotation, until `timeoutSeconds`; a client that goes away ends the handler within one interval.
"""

from __future__ import annotations

import itertools
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.emulator import EmulatorServer
from tests.emulator.api import SENT_AT_ANNOTATION
from tests.support.api_paths import PODS
from tests.support.emulator_pki import ALICE_HEADERS, front_proxy_context, kubeadm_config
from tests.support.http2 import H2Client
from tests.support.waiting import wait_until
from tests.support.watch_events import resource_version, sent_at

INTERVAL = 0.3
# Long enough that a handler still sleeping through it would be caught (see the disconnect test).
SLOW_INTERVAL = 1.5
TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


class WatchClient(Protocol):
    def next_event(self, timeout: float = 10) -> tuple[dict[str, Any], int] | None:
        """The next event and when it arrived (Unix ns); None once the response ended."""
        ...

    def go_away(self) -> None: ...

    def close(self) -> None: ...

    def handler_thread(self) -> str:
        """The name of the emulator thread that runs this watch's handler."""
        ...


class H1Watch:
    """One watch on its own HTTP/1.1 connection, read chunk by chunk."""

    def __init__(self, server: EmulatorServer, context: ssl.SSLContext, target: str,
                 headers: list[tuple[str, str]]) -> None:  # fmt: skip
        context.set_alpn_protocols(["http/1.1"])
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        self.sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
        self.local = self.sock.getsockname()
        lines = [f"GET {target} HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
        lines += [f"{n}: {v}" for n, v in headers]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.file = self.sock.makefile("rb")
        assert self.file.readline() == b"HTTP/1.1 200 OK\r\n"
        head = []
        while (line := self.file.readline()) != b"\r\n":
            head.append(line)
        assert b"Transfer-Encoding: chunked\r\n" in head
        self.buffer = b""
        self.ended = False

    def next_event(self, timeout: float = 10) -> tuple[dict[str, Any], int] | None:
        self.sock.settimeout(timeout)
        while b"\n" not in self.buffer:
            if self.ended:
                assert self.buffer == b""
                return None
            size = int(self.file.readline().strip(), 16)
            self.buffer += self.file.read(size)
            assert self.file.readline() == b"\r\n"
            self.ended = size == 0
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line), time.time_ns()

    def go_away(self) -> None:
        self.file.close()
        self.sock.close()

    def close(self) -> None:
        self.go_away()

    def handler_thread(self) -> str:
        return f"emulator-conn-{self.local[0]}:{self.local[1]}"


class H2Watch:
    """One watch as one stream of an HTTP/2 connection."""

    def __init__(self, server: EmulatorServer, context: ssl.SSLContext, target: str,
                 headers: list[tuple[str, str]], *, reset: bool = True) -> None:  # fmt: skip
        self.client = H2Client(server.port, context)
        self.stream = self.client.request("GET", target, headers)
        self.response = self.client.responses[self.stream]
        self.reset = reset
        self.taken = 0

    def next_event(self, timeout: float = 10) -> tuple[dict[str, Any], int] | None:
        r = self.response
        self.client.wait(lambda: r.data.count(b"\n") > self.taken or r.ended, timeout)
        arrived = time.time_ns()
        lines = r.data.split(b"\n")
        if len(lines) - 1 == self.taken:
            assert r.ended and lines[-1] == b""
            return None
        self.taken += 1
        return json.loads(lines[self.taken - 1]), arrived

    def go_away(self) -> None:
        """RST_STREAM (the connection stays open), or (reset=False) the connection closed."""
        if self.reset and not self.response.ended:
            self.client.reset(self.stream)
        else:
            self.client.close()

    def close(self) -> None:
        self.client.close()

    def handler_thread(self) -> str:
        host, port = self.client.sock.getsockname()[:2]
        return f"emulator-h2-{host}:{port}-{self.stream}"


def open_watch(kind: str, server: EmulatorServer, pki: Path, target: str,
               accept: str | None = None) -> WatchClient:  # fmt: skip
    headers = [*ALICE_HEADERS, *([("accept", accept)] if accept else [])]
    if kind == "h1":
        return H1Watch(server, front_proxy_context(pki), target, headers)
    return H2Watch(server, front_proxy_context(pki), target, headers, reset=kind != "h2-close")


def events_until_end(watch: WatchClient) -> list[tuple[dict[str, Any], int]]:
    events = []
    while (event := watch.next_event()) is not None:
        events.append(event)
    return events


@pytest.fixture(scope="module")
def server(pki: Path) -> Iterator[EmulatorServer]:
    with EmulatorServer(kubeadm_config(pki, watch_event_interval=INTERVAL)) as s:
        yield s


@pytest.fixture(scope="module")
def slow_server(pki: Path) -> Iterator[EmulatorServer]:
    with EmulatorServer(kubeadm_config(pki, watch_event_interval=SLOW_INTERVAL)) as s:
        yield s


@pytest.mark.parametrize("kind", ["h1", "h2"])
def test_pod_watch_sends_modified_events_every_interval_until_its_timeout(
    server: EmulatorServer, pki: Path, kind: str
) -> None:
    started = time.time_ns()
    watch = open_watch(kind, server, pki, f"{PODS}?watch=true&timeoutSeconds=1")
    events = events_until_end(watch)
    ended = time.time_ns()
    watch.close()
    assert [(e["type"], e["object"]["metadata"]["name"]) for e, _ in events] == [
        ("ADDED", "nginx-1"),
        ("ADDED", "nginx-2"),
        # At 0.3, 0.6 and 0.9 s; the next would come after the timeout (1 s).
        ("MODIFIED", "nginx-1"),
        ("MODIFIED", "nginx-1"),
        ("MODIFIED", "nginx-1"),
    ]
    assert ended - started >= 1e9
    added = [e["object"] for e, _ in events[:2]]
    modified = [e["object"] for e, _ in events[2:]]
    assert [resource_version(obj) for obj in added] == [990, 990]
    assert ["annotations" in obj["metadata"] for obj in added] == [False, False]
    first = resource_version(modified[0])
    assert first > 1000
    assert [resource_version(obj) for obj in modified] == [first, first + 1, first + 2]
    assert [list(obj["metadata"]["annotations"]) for obj in modified] == [[SENT_AT_ANNOTATION]] * 3
    sent = [sent_at(obj) for obj in modified]
    # Paced by the server, not sent together: each most of an interval after the one before.
    gaps = [sent[0] - started, *(b - a for a, b in itertools.pairwise(sent))]
    assert [gap > 0.6 * INTERVAL * 1e9 for gap in gaps] == [True] * 3, gaps
    # Each one reached the client before the next was sent: written at once, not buffered.
    arrived = [t for _, t in events[2:]]
    assert [s <= a for s, a in zip(sent, arrived, strict=True)] == [True] * 3
    assert [a < s for a, s in zip(arrived, sent[1:], strict=False)] == [True] * 2


@pytest.mark.parametrize("kind", ["h1", "h2"])
def test_table_watch_from_a_resource_version_sends_headers_in_its_first_modified_event(
    server: EmulatorServer, pki: Path, kind: str
) -> None:
    # What `kubectl get pods -w` asks after its list: no ADDED events, Tables of one row.
    watch = open_watch(
        kind, server, pki, f"{PODS}?resourceVersion=1000&watch=true&timeoutSeconds=1",
        accept=TABLE_ACCEPT,
    )  # fmt: skip
    events = [e for e, _ in events_until_end(watch)]
    watch.close()
    assert [e["type"] for e in events] == ["MODIFIED"] * 3
    tables = [e["object"] for e in events]
    assert [(t["kind"], t["apiVersion"]) for t in tables] == [("Table", "meta.k8s.io/v1")] * 3
    assert [len(t["columnDefinitions"] or []) for t in tables] == [9, 0, 0]
    assert [t["columnDefinitions"] for t in tables[1:]] == [None, None]
    for table in tables:
        [row] = table["rows"]
        assert row["cells"][:3] == ["nginx-1", "1/1", "Running"]
        partial = row["object"]
        assert (partial["kind"], partial["apiVersion"]) == (
            "PartialObjectMetadata",
            "meta.k8s.io/v1",
        )
        # The one object's resourceVersion is the Table's (GenerateTable, CommonAccessor).
        assert table["metadata"] == {"resourceVersion": partial["metadata"]["resourceVersion"]}
        assert list(partial["metadata"]["annotations"]) == [SENT_AT_ANNOTATION]
    versions = [resource_version(t) for t in tables]
    assert versions == [versions[0], versions[0] + 1, versions[0] + 2]


def live_threads() -> set[str]:
    return {t.name for t in threading.enumerate()}


@pytest.mark.parametrize("kind", ["h1", "h2", "h2-close"])
def test_a_client_that_goes_away_ends_the_handler_within_one_interval(
    slow_server: EmulatorServer, pki: Path, kind: str
) -> None:
    watch = open_watch(kind, slow_server, pki, f"{PODS}?watch=true")
    added = [watch.next_event() for _ in range(2)]
    assert [e[0]["type"] if e else None for e in added] == ["ADDED", "ADDED"]
    # The handler now waits for the first MODIFIED event, SLOW_INTERVAL away.
    name = watch.handler_thread()
    assert name in live_threads()
    watch.go_away()
    # Half an interval: a handler that slept through the interval, or noticed the client only
    # when its next write failed, would still be there.
    wait_until(lambda: name not in live_threads(), SLOW_INTERVAL / 2, interval=0.02)
    watch.close()
