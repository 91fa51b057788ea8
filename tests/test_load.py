"""A bounded load test in CI: 50 clients, mixed logins and watches, nothing lost.

bench/load.py runs 2 x 20,000 requests; CI runs 2 x 1,000.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.support.processes import REPO

sys.path.insert(0, str(REPO / "bench"))

import load


def test_load_nothing_lost_or_duplicated(tmp_path: Path) -> None:
    report = load.run(clients=50, requests=1000, workdir=tmp_path, passes=2)
    assert sum(report.statuses.values()) == 2000
    assert set(report.statuses) == {"200", "401"}, report.statuses
    assert report.statuses["401"] == 200
    assert report.lost == 0 and report.duplicated == 0
    assert len(report.good_ids) == 1800
    assert report.bad_ids_upstream == 0
    # Memory stays flat: the second pass of the same load adds (almost) nothing.
    first, second = report.rss_after_kib
    assert second - first < 8 * 1024, report.rss_after_kib
