"""How config.yaml's keys are declared (config/schema.py and the sections it includes), and how
a file that breaks the declarations is told: every problem, each naming the file and the key.

A section is a `Section` model: unknown keys are refused by construction, values are taken as
YAML typed them (no "8443" for 8443), and each key has its default and one line of
documentation in one place, its `key(...)`. The JSON Schema and the reference table in
docs/configuration.md are generated from the same declarations (config/reference.py).
"""

from __future__ import annotations

import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Union, get_args, get_origin, overload

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from pydantic.config import JsonDict
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from kube_front_proxy.config.errors import ConfigError
from kube_front_proxy.config.yamlfile import kind_of

# What the reference table shows as the default of a key that has none to show.
REQUIRED = "required"
NONE = "none"


class Section(BaseModel):
    """One mapping of config.yaml."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    # Keys that were renamed or dropped -> what the error says instead of "unknown key".
    retired: ClassVar[dict[str, str]] = {}


# A file named in config.yaml: relative to the file's folder (settings.py resolves it).
FileName = Annotated[str, StringConstraints(min_length=1)]


@overload
def resolve(file: Path, name: str) -> Path: ...
@overload
def resolve(file: Path, name: str | None) -> Path | None: ...


def resolve(file: Path, name: str | None) -> Path | None:
    """A file named in config.yaml: relative paths are relative to config.yaml's folder."""
    return None if name is None else (file.parent / Path(name).expanduser()).resolve()


class KeyProblem(ValueError):
    """A rule between keys of a section, broken: raised by a section's model validator, it names
    the key to fix (relative to the section) instead of the whole section."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def key(
    default: Any = ...,
    doc: str = "",
    *,
    shown: str | None = None,
    section: type[Section] | None = None,
    **constraints: Any,
) -> Any:
    """One key: its default (none: the key is required), its documentation, and its bounds
    (ge, le, min_length, ...). `shown` replaces the default in the reference table where the
    value alone would mislead ("the servers' host, if they all share one"). A section with
    only defaults is given as section=Model."""
    extra: JsonDict | None = {"x-default": shown} if shown is not None else None
    if section is not None:
        return Field(default_factory=section, description=doc or None, json_schema_extra=extra)
    return Field(default, description=doc or None, json_schema_extra=extra, **constraints)


def problems(file: Path, error: ValidationError, root: type[Section]) -> list[ConfigError]:
    """Each problem pydantic found in file, in the order of the declarations, as a ConfigError."""
    return [_problem(file, detail, root) for detail in error.errors()]


def dotted(loc: Sequence[str | int]) -> str:
    """("upstream", "servers", 0) -> "upstream.servers[0]"."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.startswith("["):
            # "[key]": pydantic's mark of a mapping's key (the key itself comes before it);
            # "[1]": a KeyProblem's item of a list.
            text += "" if part == "[key]" else part
        else:
            text += f".{part}" if text else part
    return text


def _problem(file: Path, detail: ErrorDetails, root: type[Section]) -> ConfigError:
    loc = list(detail["loc"])
    kind = detail["type"]
    value = detail["input"]
    ctx = detail.get("ctx") or {}
    if kind == "value_error":
        cause = ctx.get("error")
        if isinstance(cause, KeyProblem):
            loc += cause.key.split(".")
        message = str(cause)
    elif kind == "missing":
        message = "missing"
    elif kind == "invalid_key":  # a number or a boolean where a section's key goes
        loc[-1] = str(loc[-1])
        message = "unknown key"
    elif kind == "extra_forbidden":
        field = _field(root, loc[:-1])
        section = section_of(field) if field else root
        message = section.retired.get(str(loc[-1]), "unknown key") if section else "unknown key"
    elif kind in _TYPES:
        message = f"must be {_TYPES[kind]}, not {kind_of(value)}"
        if kind == "string_type":
            message += " (quote it)"
    elif kind == "literal_error":
        message = f"must be {str(ctx['expected']).replace(chr(39), '')}, not {value!r}"
    elif kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        message = _bounds(_field(root, loc))
    elif kind == "string_too_short":
        message = "must not be empty"
    elif kind == "too_short":
        message = "must list at least one"
    else:
        message = detail["msg"]
    return ConfigError(file, dotted(loc), message)


_TYPES = {
    "int_type": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
}


def _bounds(field: FieldInfo | None) -> str:
    """The key's bounds, both when it has two: "must be between 1 and 65535"."""
    low: object = None
    high: object = None
    low_open = False
    for bound in field.metadata if field else ():
        if isinstance(bound, annotated_types.Ge):
            low = bound.ge
        elif isinstance(bound, annotated_types.Gt):
            low, low_open = bound.gt, True
        elif isinstance(bound, annotated_types.Le):
            high = bound.le
    if low is not None and high is not None:
        return (f"must be more than {low} and at most {high}" if low_open
                else f"must be between {low} and {high}")  # fmt: skip
    if high is not None:
        return f"must be at most {high}"
    if low_open:
        return f"must be more than {low}"
    return f"must be {low} or more" if low == 0 else f"must be at least {low}"


def _field(root: type[Section], loc: Sequence[str | int]) -> FieldInfo | None:
    """The declaration of the key at loc (list items and mapping values: their list's key)."""
    model: type[Section] | None = root
    found = None
    for part in loc:
        if isinstance(part, int) or model is None or part not in model.model_fields:
            continue
        found = model.model_fields[part]
        model = section_of(found)
    return found


def sections(model: type[Section]) -> Iterator[tuple[str, type[Section]]]:
    """Every section under model (itself first, as ""), by dotted key."""
    yield "", model
    for name, field in model.model_fields.items():
        inner = section_of(field)
        if inner is not None:
            for below, section in sections(inner):
                yield (f"{name}.{below}" if below else name), section


def section_of(field: FieldInfo) -> type[Section] | None:
    """The section a key holds (`oidc: Oidc | None` holds Oidc), or None for a value."""
    union = get_origin(field.annotation) in (Union, types.UnionType)
    for option in get_args(field.annotation) if union else (field.annotation,):
        if isinstance(option, type) and issubclass(option, Section):
            return option
    return None
