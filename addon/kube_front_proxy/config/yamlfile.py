"""Reading YAML files: config.yaml's data (what it may say is config/schema.py), and the strict
mappings of users.yaml and revocation lists: every key known, every value of the expected type.

Each error names the file and the dotted key, so a broken file is fixed in one look.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import yaml

from kube_front_proxy.config.errors import ConfigError


def read_mapping(path: Path) -> Section:
    """Parse path as a YAML file whose top level is a mapping."""
    return Section(path, "", read_yaml(path))


def read_yaml(path: Path) -> Any:
    """Parse path as YAML; an empty file is an empty mapping."""
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
    return {} if data is None else data


class Section:
    """One mapping of a YAML file; take() each key, then finish() rejects the unknown ones."""

    def __init__(self, file: Path, key: str, data: Any) -> None:
        if not isinstance(data, dict):
            raise ConfigError(file, key, f"must be a mapping, not {kind_of(data)}")
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
            raise self.error(key, f"must be a string, not {kind_of(value)} (quote it)")
        return value

    def string_list(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self._take(key)
        if value is None:
            return default
        if not isinstance(value, list):
            raise self.error(key, f"must be a list of strings, not {kind_of(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(f"{key}[{i}]", f"must be a string, not {kind_of(item)} (quote it)")
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
                             f"{kind_of(value)}")  # fmt: skip
        if value.tzinfo is None:
            raise self.error(key, "needs a time zone (Z for UTC)")
        return value

    def finish(self) -> None:
        """Reject keys nobody took: a typo must not silently fall back to a default."""
        for key in self._data:
            if key not in self._taken:
                raise self.error(str(key), "unknown key")


def kind_of(value: object) -> str:
    """What a YAML value is, for messages: "a string", "a list", "nothing"."""
    if value is None:
        return "nothing"
    kinds = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
             int: "an integer", float: "a number"}  # fmt: skip
    return kinds.get(type(value), f"a {type(value).__name__}")
