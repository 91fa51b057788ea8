"""Reading the emulator's watch events: the resource version, and when the emulator sent one."""

from __future__ import annotations

from typing import Any

from tests.emulator.api import SENT_AT_ANNOTATION


def sent_at(obj: dict[str, Any]) -> int:
    metadata = obj["rows"][0]["object"]["metadata"] if obj["kind"] == "Table" else obj["metadata"]
    return int(metadata["annotations"][SENT_AT_ANNOTATION])


def resource_version(obj: dict[str, Any]) -> int:
    metadata = obj["rows"][0]["object"]["metadata"] if obj["kind"] == "Table" else obj["metadata"]
    return int(metadata["resourceVersion"])
