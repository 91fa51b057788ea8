"""GET /healthz on the metrics listener: 200 while the proxy's event loop runs, 503 once stuck."""

from __future__ import annotations

import asyncio
import http.client
import re
import threading
import time
from pathlib import Path

from kube_front_proxy.observe.metrics import Metrics
from tests.support.harness import Emulator, start_proxy_for
from tests.support.processes import free_port
from tests.support.waiting import wait_until_async


def get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


async def test_healthz_follows_the_event_loop() -> None:
    metrics = Metrics(per_user=False, stall_seconds=0.5)
    port = free_port()
    metrics.serve("127.0.0.1", port)
    try:
        assert await asyncio.to_thread(get, port, "/healthz") == (200, "ok\n")
        during: list[tuple[int, str]] = []
        # The scenario, timed: the probe asks 1.2 s into a stall of 1.6 s.
        probe = threading.Thread(
            target=lambda: (time.sleep(1.2), during.append(get(port, "/healthz")))
        )
        probe.start()
        time.sleep(1.6)  # the loop is blocked, as by a blocking call in a hook
        probe.join()
        assert len(during) == 1 and during[0][0] == 503
        assert re.fullmatch(r"event loop stalled for [12] s\n", during[0][1])
        # The loop runs again, and beats (the probe asks between the loop's turns).
        await wait_until_async(lambda: get(port, "/healthz") == (200, "ok\n"), 5)
        status, body = await asyncio.to_thread(get, port, "/metrics")
        assert status == 200
        assert "# TYPE kube_front_proxy_requests_total counter" in body
    finally:
        metrics.stop()


def test_the_proxy_serves_healthz_beside_its_metrics(
    pki: Path, emulator: Emulator, tmp_path: Path
) -> None:
    port = free_port()
    proxy = start_proxy_for(pki, tmp_path, emulator.port, metrics={"listen": f"127.0.0.1:{port}"})
    try:
        assert get(port, "/healthz") == (200, "ok\n")
        assert proxy.whoami()["username"] == "alice"
        assert get(port, "/healthz") == (200, "ok\n")
    finally:
        proxy.process.stop()
