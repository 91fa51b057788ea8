"""Start-up cost of the configuration: a fresh interpreter imports config/settings.py (and what
it brings: mitmproxy's header types, pydantic) and loads a config.yaml; then loads it again,
as a reload does. Checkouts take turns, run after run, and medians are printed.

    .venv/bin/python bench/config_startup.py [--runs 20] [--config FILE] [CHECKOUT ...]

Each CHECKOUT (default: this one) is imported from its own addon/ with this interpreter, so
compare revisions whose dependencies this environment has.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_ONE_RUN = """
import sys, time
from pathlib import Path
start = time.perf_counter()
from kube_front_proxy.config.settings import load_settings
imported = time.perf_counter()
load_settings(Path(sys.argv[1]))
loaded = time.perf_counter()
load_settings(Path(sys.argv[1]))
print(imported - start, loaded - imported, time.perf_counter() - loaded)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--config", type=Path, default=REPO / "config" / "config.yaml")
    parser.add_argument("checkouts", nargs="*", type=Path, default=[REPO])
    args = parser.parse_args()
    times: dict[Path, list[list[float]]] = {checkout: [] for checkout in args.checkouts}
    for _ in range(args.runs):
        for checkout in args.checkouts:
            env = {**os.environ, "PYTHONPATH": str(checkout.resolve() / "addon")}
            command = [sys.executable, "-c", _ONE_RUN, str(args.config.resolve())]
            out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            times[checkout].append([float(x) * 1000 for x in out.stdout.split()])
    print(f"{args.config}, median of {args.runs} runs, ms:")
    print(f"{'checkout':40} {'import':>8} {'load':>8} {'together':>9} {'reload':>8}")
    for checkout, runs in times.items():
        imports, loads, reloads = (statistics.median(column) for column in zip(*runs, strict=True))
        together = statistics.median(i + load for i, load, _ in runs)
        print(f"{checkout!s:40} {imports:8.1f} {loads:8.2f} {together:9.1f} {reloads:8.2f}")


if __name__ == "__main__":
    main()
