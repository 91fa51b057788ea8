"""A bounded load test in CI: 50 clients, mixed logins and watches, nothing lost.

bench/load.py runs the full 20,000 requests; CI runs a tenth of that.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .support import REPO

sys.path.insert(0, str(REPO / "bench"))

import load


def test_load_nothing_lost_or_duplicated(tmp_path: Path) -> None:
    report = load.run(clients=50, requests=2000, workdir=tmp_path)
    assert sum(report.statuses.values()) == 2000
    assert set(report.statuses) == {"200", "401"}, report.statuses
    assert report.statuses["401"] == 200
    assert report.lost == 0 and report.duplicated == 0
    assert len(report.good_ids) == 1800
    assert report.bad_ids_upstream == 0
    # Memory stays flat: a few MB of caches and buffers, not a leak per request.
    assert report.rss_after_kib - report.rss_before_kib < 30 * 1024
