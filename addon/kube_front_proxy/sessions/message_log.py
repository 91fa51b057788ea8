"""How many log lines an upgraded session (exec, attach, cp, port-forward) may write.

mitmdump writes one line for every WebSocket message and every raw TCP read, and mitmproxy's
WebSocket layer one for every ping and pong. A client that floods a session with pings or tiny
frames (or drips them, one per read) wrote 13 MB of log a minute, each line repeating the
request path it chose. Here every session gets the first `burst` lines as mitmproxy writes
them; after that its messages are counted, and one summary line says how many were not shown,
at most once every `interval` seconds and once more when the session ends.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from mitmproxy import http
from mitmproxy.flow import Flow

BURST = 20
INTERVAL_SECONDS = 10.0
# More sessions than connections can be open (connections.max_total) are never tracked; the
# oldest go first if end() was somehow missed.
MAX_SESSIONS = 10_000


@dataclass
class _Session:
    shown: int = 0
    hidden: int = 0  # since the last summary
    hidden_total: int = 0
    last_summary: float = 0.0


class MessageLog:
    """Per-session counters: which messages may be logged one by one, and summaries."""

    def __init__(
        self,
        burst: int = BURST,
        interval: float = INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        self.burst = burst
        self.interval = interval
        self._clock = clock
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, _Session] = OrderedDict()

    def admit(self, session: str) -> bool:
        """Count one message of `session`; True if it may be logged one by one."""
        state = self._sessions.get(session)
        if state is None:
            state = self._sessions[session] = _Session(last_summary=self._clock())
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        if state.shown < self.burst:
            state.shown += 1
            return True
        state.hidden += 1
        state.hidden_total += 1
        return False

    def due(self, session: str) -> int:
        """Messages not logged since the last summary, when a summary is due (else 0)."""
        state = self._sessions.get(session)
        if state is None or not state.hidden:
            return 0
        now = self._clock()
        if now - state.last_summary < self.interval:
            return 0
        hidden, state.hidden, state.last_summary = state.hidden, 0, now
        return hidden

    def end(self, session: str) -> tuple[int, int]:
        """Forget the session: (messages not yet summarised, messages not logged in all)."""
        state = self._sessions.pop(session, None)
        return (state.hidden, state.hidden_total) if state else (0, 0)

    def __len__(self) -> int:
        return len(self._sessions)


def describe(f: Flow) -> str:
    """A session in a log line: its kind, user and client, never the path (the client's)."""
    kind = "WebSocket session" if isinstance(f, http.HTTPFlow) else "TCP session"
    user = f.metadata.get("k8s_user")
    who = f" of {user}" if isinstance(user, str) else ""
    host, port = f.client_conn.peername[:2]
    return f"{kind}{who} from {host}:{port}"


def summary_line(f: Flow, hidden: int) -> str:
    return f"kube-front-proxy: {describe(f)}: {hidden} more messages, not logged one by one"
