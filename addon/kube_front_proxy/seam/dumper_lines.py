"""mitmdump's line per WebSocket message and per raw TCP read, within each session's allowance.

mitmproxy's Dumper (mitmdump's output) echoes one line for every `websocket_message` and
`tcp_message`, repeating the request path; a client dripping tiny frames or pings into an exec
session wrote 13 MB of log a minute. Its only switches are global (`flow_detail`, which also
silences the access log, and `dumper_filter`, which cannot count), so its two message hooks are
wrapped: a session's first messages are echoed as before, the rest counted and summed up in a
line at most every few seconds and at the end (`sessions/message_log.py`, the seam policy's
`message_log`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mitmproxy.addons.dumper import Dumper
from mitmproxy.flow import Flow

from kube_front_proxy import seam
from kube_front_proxy.sessions.message_log import summary_line

logger = logging.getLogger("kube_front_proxy")

# mitmproxy 12.3.1's Dumper.websocket_message and Dumper.tcp_message.
FINGERPRINTS = {"websocket_message": "2ca2c7fa524dc6e3", "tcp_message": "e47e092aaf3472db"}


def _limited(hook: str) -> Callable[[Dumper, Flow], None]:
    echo: Callable[[Dumper, Any], None] = seam.original(Dumper, hook)

    def limited(self: Dumper, f: Flow) -> None:
        message_log = seam.policy.message_log
        if message_log.admit(f.id):
            echo(self, f)
        elif hidden := message_log.due(f.id):
            logger.info(summary_line(f, hidden))

    return limited


def install() -> None:
    for hook, fingerprint in FINGERPRINTS.items():
        seam.replace(
            Dumper,
            hook,
            _limited(hook),
            fingerprint=fingerprint,
            why="one line per upgraded message only within the session's log allowance "
            "(seam/dumper_lines.py)",
        )
