"""The recorded sessions of a directory, one line each: `kube-front-proxy-audit sessions DIR`.

Read from each `.cast` file's header alone (`sessions/recording.py` keeps it up to date), so a
directory of large recordings lists at once. Every field came from a client or the API server
and is escaped for the terminal (`summary.printable`). `asciinema play FILE` replays a session,
`asciinema cat FILE` prints what its user saw.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kube_front_proxy.observe.summary import printable
from kube_front_proxy.sessions.asciicast import read_header
from kube_front_proxy.sessions.recording import OWN

COLUMNS = ("START", "USER", "VERB", "POD", "CONTAINER", "COMMAND", "DURATION", "IN", "OUT",
           "TRUNCATED", "FILE")  # fmt: skip


@dataclass(frozen=True)
class Row:
    started: str
    cells: tuple[str, ...]


def row(path: Path, header: dict[str, Any]) -> Row:
    own = header.get(OWN)
    own = own if isinstance(own, dict) else {}
    ended = own.get("ended") is True
    command = own.get("command")
    words = [str(w) for w in command] if isinstance(command, list) else []
    started = str(own.get("started", ""))
    duration = header.get("duration")
    cells = (
        started,
        str(own.get("user", "")),
        str(own.get("verb", "")),
        f"{own.get('namespace', '')}/{own.get('pod', '')}",
        str(own.get("container", "")),
        shlex.join(words),
        f"{duration:.2f}s" if ended and isinstance(duration, (int, float)) else "(not ended)",
        str(own.get("bytes_in", "-")) if ended else "-",
        str(own.get("bytes_out", "-")) if ended else "-",
        ("yes" if own.get("truncated") else "no") if ended else "-",
        path.name,
    )
    return Row(started, cells)


def rows(directory: Path, problems: list[str]) -> list[Row]:
    found = []
    for path in sorted(directory.glob("*.cast")):
        try:
            found.append(row(path, read_header(path)))
        except (OSError, ValueError) as e:
            problems.append(f"{path.name}: {e}")
    return sorted(found, key=lambda r: r.started)


def render(table: Iterable[Sequence[str]]) -> str:
    lines = [[printable(cell) for cell in line] for line in table]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: kube-front-proxy-audit sessions DIR", file=sys.stderr)
        return 2
    directory = Path(argv[0])
    if not directory.is_dir():
        print(f"kube-front-proxy-audit: {directory}: not a directory", file=sys.stderr)
        return 1
    problems: list[str] = []
    table = rows(directory, problems)
    print(render([COLUMNS, *(r.cells for r in table)]))
    for problem in problems:
        print(printable(f"kube-front-proxy-audit: skipped {problem}"), file=sys.stderr)
    return 0
