"""The error type for bad configuration: it always names the file and the key."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class ConfigError(Exception):
    """A configuration file, or a file it points to, is unusable."""

    def __init__(self, file: Path | str, key: str, message: str) -> None:
        self.file = str(file)
        self.key = key
        self.message = message
        where = f"{self.file}: {key}" if key else self.file
        super().__init__(f"{where}: {message}")


class ConfigErrors(ConfigError):
    """Several problems of one file, all told at once (one line each); file, key and message
    are the first one's."""

    def __init__(self, problems: Sequence[ConfigError]) -> None:
        first = problems[0]
        super().__init__(first.file, first.key, first.message)
        self.problems = tuple(problems)
        self.args = ("\n".join(str(problem) for problem in problems),)

    @staticmethod
    def of(problems: Sequence[ConfigError]) -> ConfigError:
        """One problem as itself, several as one ConfigErrors."""
        return problems[0] if len(problems) == 1 else ConfigErrors(problems)
