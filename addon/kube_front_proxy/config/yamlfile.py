"""Strict reading of YAML mappings: every key known, every value of the expected type.

Each error names the file and the dotted key, so a broken config is fixed in one look.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import yaml

from kube_front_proxy.config.errors import ConfigError


def read_mapping(path: Path) -> Section:
    """Parse path as a YAML file whose top level is a mapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(path, "", f"cannot read file: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(path, "", "not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "syntax error"
        raise ConfigError(path, "", f"invalid YAML{where}: {problem}") from None
    if data is None:
        data = {}
    return Section(path, "", data)


class Section:
    """One mapping of a YAML file; take() each key, then finish() rejects the unknown ones."""

    def __init__(self, file: Path, key: str, data: Any) -> None:
        if not isinstance(data, dict):
            raise ConfigError(file, key, f"must be a mapping, not {_kind(data)}")
        self.file = file
        self.key = key
        self._data: dict[Any, Any] = data
        self._taken: set[str] = set()

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.file, self._join(key), message)

    def _join(self, key: str) -> str:
        return f"{self.key}.{key}" if self.key else key

    def _take(self, key: str) -> Any:
        self._taken.add(key)
        return self._data.get(key)

    def has(self, key: str) -> bool:
        return key in self._data

    def names(self) -> list[Any]:
        return list(self._data)

    def section(self, key: str, *, required: bool = False) -> Section:
        value = self._take(key)
        if value is None:
            if required:
                raise self.error(key, "missing")
            value = {}
        return Section(self.file, self._join(key), value)

    def string(self, key: str, default: str | None = None) -> str:
        value = self._take(key)
        if value is None:
            if default is None:
                raise self.error(key, "missing")
            return default
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, not {_kind(value)} (quote it)")
        return value

    def integer(self, key: str, default: int) -> int:
        value = self._take(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, not {_kind(value)}")
        return value

    def number(self, key: str, default: float) -> float:
        """An integer or a decimal number, such as 0.2."""
        value = self._take(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number, not {_kind(value)}")
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._take(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, not {_kind(value)}")
        return value

    def string_list(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self._take(key)
        if value is None:
            return default
        if not isinstance(value, list):
            raise self.error(key, f"must be a list of strings, not {_kind(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(f"{key}[{i}]", f"must be a string, not {_kind(item)} (quote it)")
        return tuple(value)

    def timestamp(self, key: str) -> datetime.datetime:
        """An RFC 3339 time with its offset (`2025-06-01T12:00:00Z`), quoted or not."""
        value = self._take(key)
        if isinstance(value, str):
            try:
                value = datetime.datetime.fromisoformat(value)
            except ValueError:
                raise self.error(key, f"not an RFC 3339 time: {value!r}") from None
        if not isinstance(value, datetime.datetime):
            raise self.error(key, f"must be a time such as 2025-06-01T12:00:00Z, not "
                             f"{_kind(value)}")  # fmt: skip
        if value.tzinfo is None:
            raise self.error(key, "needs a time zone (Z for UTC)")
        return value

    def path(self, key: str) -> Path:
        """A file path; relative paths are resolved against the YAML file's own folder."""
        value = self.string(key)
        if not value:
            raise self.error(key, "must not be empty")
        return (self.file.parent / Path(value).expanduser()).resolve()

    def optional_path(self, key: str) -> Path | None:
        return None if self._take(key) is None else self.path(key)

    def finish(self) -> None:
        """Reject keys nobody took: a typo must not silently fall back to a default."""
        for key in self._data:
            if key not in self._taken:
                raise self.error(str(key), "unknown key")


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), f"a {type(value).__name__}"
    )
