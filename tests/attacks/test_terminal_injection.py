"""Terminal injection: what a client chose is printed escaped by kube-front-proxy-audit.

Refused logins are summarised by the user name the client claimed, which is anything a Basic
header can carry. Printed raw, CR/LF forges summary lines, ESC sequences clear the operator's
screen or set the terminal title, and U+202E / U+2028 reorder or break what is read.
"""

from __future__ import annotations

import subprocess
import sys
import unicodedata
from pathlib import Path

from tests.support.harness import Emulator, start_proxy_for
from tests.support.users import basic_header

HOSTILE_NAMES = [
    "mallory\r\n         9  alice",  # a forged summary line
    "eve\x1b[2J\x1b[H",  # clear screen, cursor home
    "trudy\x1b]0;owned\x07",  # set the terminal title
    "oscar\u202egnp.exe",  # right-to-left override
    "peggy\u2028line",  # Unicode line separator
]


def _summary(*files: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "kube_front_proxy.observe.summary", *map(str, files)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def _assert_inert(out: str) -> None:
    unsafe = [c for c in out if c != "\n" and unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp"}]
    assert not unsafe, f"control characters reached the terminal: {unsafe!r}"
    lines = out.splitlines()
    # The forged line must not stand on its own: alice never logged in or was refused.
    assert not any(line.strip() == "9  alice" for line in lines)


def test_hostile_claimed_user_names_are_printed_escaped(
    pki: Path, emulator: Emulator, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.log"
    flows = tmp_path / "flows.mitm"
    proxy = start_proxy_for(pki, tmp_path, emulator.port, "-w", str(flows),
                            audit={"path": str(audit)})  # fmt: skip
    try:
        for name in HOSTILE_NAMES:
            status, _, _ = proxy.raw("GET", "/api", [basic_header(name, "guess")])
            assert status == 401
    finally:
        proxy.process.stop()  # flushes the flow file

    for source in (audit, flows):
        out = _summary(source)
        _assert_inert(out)
        assert "mallory\\x0d\\x0a" in out
        assert "eve\\x1b[2J\\x1b[H" in out
        assert "trudy\\x1b]0;owned\\x07" in out
        assert "oscar\\u202egnp.exe" in out
        assert "peggy\\u2028line" in out
