"""Faults a test can switch on in a running emulator: slow responses and a failing /readyz.

Nothing here changes what a response says, only when it comes and whether /readyz passes, so a
client (or a load balancer in front of several emulators) cannot tell the emulator from a slow
or shutting-down kube-apiserver.

- `--response-delay SECONDS`: every response waits this long before its first byte.
- `--response-delay-file PATH`: when the file exists, its content (seconds, a decimal number)
  replaces `--response-delay`; it is read again for every response, so writing `0.5` into it
  slows a running emulator down and deleting it restores the flag's value. Unreadable content
  counts as the flag's value and is logged.
- `--not-ready-file PATH`: while the file exists /readyz fails as during a graceful shutdown
  (`shutdown` check failed, 500).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("kube-apiserver-emulator")


@dataclass(frozen=True)
class Faults:
    response_delay: float = 0.0
    response_delay_file: Path | None = None
    not_ready_file: Path | None = None

    def delay(self) -> float:
        """Seconds the next response waits."""
        if self.response_delay_file is None:
            return self.response_delay
        try:
            text = self.response_delay_file.read_text()
        except FileNotFoundError:
            return self.response_delay
        try:
            seconds = float(text.strip())
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds) or seconds < 0:
            log.warning("%s: %r is not a delay in seconds", self.response_delay_file, text)
            return self.response_delay
        return seconds

    def ready(self) -> bool:
        return self.not_ready_file is None or not self.not_ready_file.exists()
