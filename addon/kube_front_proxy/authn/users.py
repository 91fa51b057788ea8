"""users.yaml: the groups, uid and extra attributes of each user.

Every value ends up in an HTTP header, so anything a header cannot carry faithfully is
refused here, when the file loads, rather than mangled or injected at request time.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from kube_front_proxy.config.errors import ConfigError
from kube_front_proxy.config.settings import FileRef
from kube_front_proxy.config.yamlfile import Section, read_mapping
from kube_front_proxy.identity.headers import HeaderNames, Identity


def header_value_problem(value: str) -> str | None:
    """Why value cannot be sent as a header value unchanged, or None if it can."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        # CR/LF would split the header (injection); NUL and other controls are refused by
        # HTTP parsers or silently altered.
        return "contains a control character (CR, LF, NUL, ...)"
    if value != value.strip(" \t"):
        # HTTP parsers strip surrounding whitespace, so the API server would see another value.
        return "has leading or trailing whitespace"
    return None


def load_users(ref: FileRef | None, names: HeaderNames) -> Mapping[str, Identity]:
    """Read users.yaml; a user missing from it gets its name and no groups."""
    if ref is None:
        return {}
    root = read_mapping(ref.path)
    users = root.section("users")
    result: dict[str, Identity] = {}
    for name in users.names():
        if not isinstance(name, str):
            raise users.error(str(name), "user names must be strings (quote it)")
        _check_value(users, name, name)
        result[name] = _identity(name, users.section(name), names)
    users.finish()
    root.finish()
    return result


def _identity(user: str, section: Section, names: HeaderNames) -> Identity:
    groups = section.string_list("groups")
    for i, group in enumerate(groups):
        if not group:
            raise section.error(f"groups[{i}]", "empty group (the API server drops it)")
        _check_value(section, f"groups[{i}]", group)
    if groups and not names.group:
        raise section.error("groups", "cannot be sent: identity.group_headers is empty")

    uid = section.string("uid", "")
    _check_value(section, "uid", uid)
    if uid and not names.uid:
        raise section.error("uid", "cannot be sent: identity.uid_headers is empty")

    extra_section = section.section("extra")
    extra: dict[str, tuple[str, ...]] = {}
    for key in extra_section.names():
        if not isinstance(key, str) or not key:
            raise extra_section.error(str(key), "extra keys must be non-empty strings")
        values = extra_section.string_list(key)
        for i, value in enumerate(values):
            _check_value(extra_section, f"{key}[{i}]", value)
        extra[key] = values
    extra_section.finish()
    if extra and not names.extra_prefixes:
        raise section.error("extra", "cannot be sent: identity.extra_headers_prefixes is empty")

    section.finish()
    return Identity(user=user, groups=groups, uid=uid, extra=extra)


def _check_value(section: Section, key: str, value: str) -> None:
    problem = header_value_problem(value)
    if problem:
        raise section.error(key, problem)


def check_user_name(file: Path, name: str) -> None:
    """Refuse a user name (from htpasswd) that a header could not carry unchanged."""
    problem = header_value_problem(name)
    if problem or not name:
        raise ConfigError(file, f"user {name!r}", problem or "empty user name")
