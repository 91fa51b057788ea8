"""What session recording (audit.sessions_dir) costs a request that opens no session.

    .venv/bin/python bench/recording_cost.py

Times, in this process, the work the addon's hooks do for session recording on one ordinary
request (a GET: `requestheaders` and `response`) and on one message of an upgraded connection
that is not a recorded session (a WebSocket watch), with recording off and on. The figures are
the best of several timeit runs, in nanoseconds; compare them with what one request costs the
proxy in all (about 3,400,000 ns of CPU at 290 requests/s on one core, docs/performance.md).
"""

from __future__ import annotations

import sys
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path

from mitmproxy.test import tflow

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "addon"))

from kube_front_proxy.sessions.tracking import Sessions

NUMBER = 20_000


def best_ns(step: Callable[[], object]) -> float:
    return min(timeit.repeat(step, number=NUMBER, repeat=7)) / NUMBER * 1e9


def per_request(sessions: Sessions) -> Callable[[], object]:
    """The recording calls of requestheaders and response, as addon.py guards them."""
    flow = tflow.tflow(resp=True)
    flow.request.path = "/api/v1/namespaces/default/pods?limit=500"

    def step() -> None:
        if sessions.enabled:
            opened = sessions.request(flow)
            assert not (opened.annotations or opened.refusal)
        if sessions.enabled:
            sessions.response(flow)

    return step


def per_message(sessions: Sessions) -> Callable[[], object]:
    """The recording call of websocket_message, for a WebSocket that is not a session."""
    flow = tflow.twebsocketflow()

    def step() -> None:
        if sessions.enabled:
            sessions.websocket_message(flow)

    return step


def main() -> int:
    with tempfile.TemporaryDirectory() as directory:
        on, off = Sessions(Path(directory)), Sessions(None)
        rows = [
            ("request (GET)", best_ns(per_request(off)), best_ns(per_request(on))),
            ("WebSocket message, not a session", best_ns(per_message(off)),
             best_ns(per_message(on))),
        ]  # fmt: skip
    print("| per | recording off | recording on |")
    print("|---|---:|---:|")
    for name, off_ns, on_ns in rows:
        print(f"| {name} | {off_ns:,.0f} ns | {on_ns:,.0f} ns |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
