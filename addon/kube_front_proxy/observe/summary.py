"""Summarise an audit log or a saved flow file: who did what, and which logins failed.

    .venv/bin/kube-front-proxy-audit audit.log [audit.log.1 ...]
    .venv/bin/kube-front-proxy-audit flows.mitm
    .venv/bin/kube-front-proxy-audit sessions DIR     # the recorded sessions (sessions/summary.py)

Counts requests per user and per verb, and refused logins per source address and per claimed
user. Audit logs are read as written by this proxy (or by kube-apiserver: same schema); flow
files are read through mitmproxy, using the labels the addon puts on every flow.
"""

from __future__ import annotations

import argparse
import json
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mitmproxy import exceptions, http, io

from kube_front_proxy.observe.audit import LOGIN_REFUSED_ANNOTATION
from kube_front_proxy.observe.request_info import RequestInfoError, parse_request_info

# Unicode categories that move the cursor, reorder or hide text on a terminal: controls (CR,
# LF, ESC), format characters (U+202E), line and paragraph separators, unassigned and private.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def printable(text: str) -> str:
    """`text` escaped for a terminal: every character a client could use to forge lines, send
    escape sequences or reorder what the operator reads becomes a visible escape."""
    if text.isprintable() and "\\" not in text:
        return text
    out = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif unicodedata.category(char) in _UNPRINTABLE:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


@dataclass(frozen=True)
class Entry:
    user: str
    verb: str
    source: str
    refused: str | None  # why the login was refused, None for a logged-in request


@dataclass
class Summary:
    requests_per_user: Counter[str] = field(default_factory=Counter)
    requests_per_verb: Counter[str] = field(default_factory=Counter)
    refused_per_source: Counter[str] = field(default_factory=Counter)
    refused_per_claimed_user: Counter[str] = field(default_factory=Counter)

    def add(self, entry: Entry) -> None:
        if entry.refused is None:
            self.requests_per_user[entry.user] += 1
            self.requests_per_verb[entry.verb] += 1
        else:
            self.refused_per_source[entry.source] += 1
            self.refused_per_claimed_user[entry.user or "(none)"] += 1

    def render(self) -> str:
        sections = [
            ("requests per user", self.requests_per_user),
            ("requests per verb", self.requests_per_verb),
            ("refused logins per source", self.refused_per_source),
            ("refused logins per claimed user", self.refused_per_claimed_user),
        ]
        lines = []
        for title, counts in sections:
            lines.append(f"{title}:")
            lines.extend(f"  {n:8d}  {printable(key)}" for key, n in counts.most_common())
            if not counts:
                lines.append("         -")
        return "\n".join(lines)


def audit_entries(lines: Iterable[str]) -> Iterator[Entry]:
    """Entries of an audit log; one per request (its last stage), not one per stage."""
    for line in lines:
        if not line.strip():
            continue
        event = json.loads(line)
        if event.get("stage") == "ResponseStarted":
            continue  # the ResponseComplete of the same request follows
        annotations = event.get("annotations") or {}
        yield Entry(
            user=event.get("user", {}).get("username", ""),
            verb=event.get("verb", ""),
            source=(event.get("sourceIPs") or [""])[0],
            refused=annotations.get(LOGIN_REFUSED_ANNOTATION),
        )


def flow_entries(flows: Iterable[object]) -> Iterator[Entry]:
    for flow in flows:
        if not isinstance(flow, http.HTTPFlow):
            continue
        try:
            verb = parse_request_info(flow.request.method, flow.request.path).verb
        except RequestInfoError as e:
            verb = e.info.verb
        refused = flow.metadata.get("k8s_refused")
        user = flow.metadata.get("k8s_user") or flow.metadata.get("k8s_claimed_user", "")
        yield Entry(str(user), verb, flow.client_conn.peername[0], refused)


def entries_of(path: Path) -> Iterator[Entry]:
    with path.open("rb") as f:
        first = f.read(1)
    if first == b"{":
        with path.open(encoding="utf-8", errors="replace") as lines:
            yield from audit_entries(lines)
    else:
        with path.open("rb") as f:
            yield from flow_entries(io.FlowReader(f).stream())


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["sessions"]:
        from kube_front_proxy.sessions import summary as session_summary  # it imports this module

        return session_summary.main(args[1:])
    return summarise(args)


def summarise(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="audit logs or mitmproxy flow files")
    args = parser.parse_args(argv)
    summary = Summary()
    for path in args.files:
        try:
            for entry in entries_of(path):
                summary.add(entry)
        except (OSError, ValueError, exceptions.FlowReadException) as e:
            print(printable(f"kube-front-proxy-audit: {path}: {e}"), file=sys.stderr)
            return 1
    print(summary.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
