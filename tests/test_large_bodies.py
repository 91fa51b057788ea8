"""Large bodies and watch events pass through the proxy without piling up in it.

bench/streams.py measures the same with 200 MB and prints the figures docs/performance.md quotes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support.harness import start_proxy_for
from tests.support.processes import REPO

sys.path.insert(0, str(REPO / "bench"))

import streams


@pytest.mark.parametrize("with_length", [False, True], ids=["chunked", "content-length"])
def test_a_large_body_does_not_grow_the_proxy(pki: Path, tmp_path: Path, with_length: bool) -> None:
    upstream = streams.start_upstream(pki)
    # The small upstream publishes no trust ConfigMap (the proxy would not serve).
    proxy = start_proxy_for(pki, tmp_path, upstream, "--set", "flow_detail=0",
                            upstream={"check_cluster_trust": False})  # fmt: skip
    try:
        growth = streams.big_body_peak_mib(
            proxy.port, pki, proxy.process.proc.pid, 40 * 1024 * 1024, with_length
        )
        latencies = streams.watch_latencies_ms(proxy.port, pki, True, events=25)
    finally:
        proxy.process.stop()
    assert growth < 10, f"{growth:.1f} MiB for a 40 MiB body"
    assert len(latencies) == 25
    # Each event is passed on as it arrives (the bound is 50 ms).
    assert max(latencies) < 50
