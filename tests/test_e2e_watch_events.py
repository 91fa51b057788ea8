"""Delayed watch events through the proxy to real kubectl (`get pods -w`), over h2 and HTTP/1.1.

The emulator sends a MODIFIED event every INTERVAL seconds, stamped with its send time
(`--watch-event-interval`). kubectl must print each one before the emulator sends the next: the
proxy passes a watch on as it arrives instead of buffering it. No latency bound is asserted
(speed belongs to benchmarks); the measured latencies are printed (`pytest -s`).
"""

from __future__ import annotations

import codecs
import json
import os
import select
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.harness import Emulator, Proxy, start_emulator, start_proxy_for
from tests.support.kubectl_http import CLIENT_ENV, VERSION, assert_identity
from tests.support.watch_events import resource_version, sent_at

INTERVAL = 0.5
EVENTS = 4


@pytest.fixture(scope="module")
def stack(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Emulator, Proxy]]:
    workdir = tmp_path_factory.mktemp("watch-events")
    with (
        start_emulator(pki, workdir, "-q", "--watch-event-interval", str(INTERVAL)) as emulator,
        start_proxy_for(pki, workdir, emulator.port) as proxy,
    ):
        yield emulator, proxy


def printed_objects(
    proc: subprocess.Popen[bytes], modified: int, timeout: float
) -> list[tuple[dict[str, Any], int]]:
    """The JSON documents kubectl prints, each with when it was read (Unix ns), until `modified`
    MODIFIED events have come."""
    assert proc.stdout
    decoder = json.JSONDecoder()
    text = codecs.getincrementaldecoder("utf-8")()
    pending = ""
    printed: list[tuple[dict[str, Any], int]] = []
    deadline = time.monotonic() + timeout
    while sum(obj["type"] == "MODIFIED" for obj, _ in printed) < modified:
        ready, _, _ = select.select([proc.stdout], [], [], max(deadline - time.monotonic(), 0))
        if not ready:
            raise AssertionError(f"kubectl printed {len(printed)} events in {timeout} s")
        chunk = os.read(proc.stdout.fileno(), 65536)
        read_at = time.time_ns()
        if not chunk:
            raise AssertionError(f"kubectl ended after {len(printed)} events")
        pending += text.decode(chunk)
        while pending.strip():
            try:
                obj, end = decoder.raw_decode(pending.lstrip())
            except json.JSONDecodeError:
                break  # the rest of this document is still on its way
            printed.append((obj, read_at))
            pending = pending.lstrip()[end:]
    return printed


@pytest.mark.parametrize("client", ["h2", "http1"])
def test_kubectl_prints_each_event_before_the_next_is_sent(
    stack: tuple[Emulator, Proxy], client: str
) -> None:
    emulator, proxy = stack
    before = len(emulator.requests())
    proc = proxy.kubectl_running(
        "get", "pods", "-w", "--output-watch-events", "-o", "json", env=CLIENT_ENV[client]
    )
    try:
        printed = printed_objects(proc, EVENTS, timeout=EVENTS * INTERVAL + 15)
        assert proc.poll() is None  # still watching
    finally:
        proc.kill()
        proc.communicate()
    # The list's two pods, then the watch's events (it starts from the list's resourceVersion).
    assert [(obj["type"], obj["object"]["metadata"]["name"]) for obj, _ in printed] == [
        ("ADDED", "nginx-1"),
        ("ADDED", "nginx-2"),
        *[("MODIFIED", "nginx-1")] * EVENTS,
    ]
    events = [(obj["object"], read_at) for obj, read_at in printed[2:]]
    versions = [resource_version(obj) for obj, _ in events]
    assert versions == list(range(versions[0], versions[0] + EVENTS))
    sent = [sent_at(obj) for obj, _ in events]
    shown = [read_at for _, read_at in events]
    latencies_ms = [(p - s) / 1e6 for s, p in zip(sent, shown, strict=True)]
    print(
        f"\nkubectl {client} -> proxy -> emulator: sent-at to printed by kubectl, ms:",
        " ".join(f"{ms:.1f}" for ms in latencies_ms),
        f"(median {statistics.median(latencies_ms):.1f}, max {max(latencies_ms):.1f})",
    )
    assert [ms > 0 for ms in latencies_ms] == [True] * EVENTS
    # Not buffered: each event was on kubectl's stdout before the next one left the emulator.
    late = [i for i, (p, s) in enumerate(zip(shown, sent[1:], strict=False)) if p >= s]
    assert late == [], f"events printed after the next was sent: {late}"

    [watch] = [r for r in emulator.requests()[before:] if "watch=true" in r["path"]]
    assert "resourceVersion=1000" in watch["path"]
    assert (watch["status"], watch["http_version"]) == (200, VERSION[client])
    assert_identity(watch, client_h2=client == "h2")
