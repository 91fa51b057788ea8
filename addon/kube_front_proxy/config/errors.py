"""The one error type for bad configuration: it always names the file and the key."""

from __future__ import annotations

from pathlib import Path


class ConfigError(Exception):
    """A configuration file, or a file it points to, is unusable."""

    def __init__(self, file: Path | str, key: str, message: str) -> None:
        self.file = str(file)
        self.key = key
        self.message = message
        where = f"{self.file}: {key}" if key else self.file
        super().__init__(f"{where}: {message}")
