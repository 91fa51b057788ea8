"""What is generated from config/schema.py: the JSON Schema beside config/ (for editors, with
yaml-language-server) and the key table of docs/configuration.md.

`python -m kube_front_proxy.config --write` rewrites both; tests/test_config_schema.py fails
when either differs from what the declarations give.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic.json_schema import GenerateJsonSchema

from kube_front_proxy.config.declare import NONE, REQUIRED, Section, section_of
from kube_front_proxy.config.schema import ConfigFile

REPO = Path(__file__).resolve().parents[3]
SCHEMA_FILE = REPO / "config" / "config.schema.json"
DOCS_FILE = REPO / "docs" / "configuration.md"
BEGIN = "<!-- config keys: begin (python -m kube_front_proxy.config --write) -->"
END = "<!-- config keys: end -->"


class _Untitled(GenerateJsonSchema):
    """No "title" per key: the key is its own title, the description says the rest."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def json_schema() -> str:
    """The JSON Schema of config.yaml, as committed in config/config.schema.json."""
    schema = ConfigFile.model_json_schema(schema_generator=_Untitled)
    document = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def key_table() -> str:
    """The reference table: every key, its default and its meaning."""
    rows = ["| key | default | meaning (nginx equivalent) |", "|---|---|---|"]
    rows += [f"| `{name}` | {default} | {doc} |" for name, default, doc in keys(ConfigFile)]
    return "\n".join(rows) + "\n"


def keys(model: type[Section], prefix: str = "") -> Iterator[tuple[str, str, str]]:
    """(dotted key, default as shown, meaning) of every key under model that holds a value."""
    for name, field in model.model_fields.items():
        section = section_of(field)
        if section is not None and field.annotation is not dict:
            yield from keys(section, f"{prefix}{name}.")
            continue
        extra = field.json_schema_extra
        shown = extra.get("x-default") if isinstance(extra, dict) else None
        if shown is None:
            shown = REQUIRED if field.is_required() else _shown(field.default)
        yield f"{prefix}{name}", str(shown), field.description or ""


def _shown(value: object) -> str:
    if value is None:
        return NONE
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list):
        return f"`[{', '.join(map(str, value))}]`"
    if value == "":
        return '`""`'
    return f"`{value}`"


def docs_with_table(text: str) -> str:
    """docs/configuration.md with the table between its markers replaced."""
    head, begin, rest = text.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"{DOCS_FILE.name}: the markers {BEGIN!r} and {END!r} are missing")
    return f"{head}{BEGIN}\n{key_table()}{END}{tail}"
