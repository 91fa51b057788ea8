"""JSON bytes as Go's encoding/json writes them, which is what kube-apiserver puts on the wire.

The apiserver's JSON serializer (`k8s.io/apimachinery pkg/runtime/serializer/json/json.go`,
`doEncode`) uses `json.NewEncoder(w).Encode(obj)`: compact output, HTML-safe escaping of `<`, `>`
and `&`, U+2028/U+2029 escaped, invalid UTF-8 replaced by a literal `\\ufffd` escape, and a
trailing newline. Map keys come out sorted; callers build dicts with struct fields in Go's field
order and pass map-typed values (such as `extra`) through `sorted_map`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

# Strings in this package carry bytes that are not valid UTF-8 as lone surrogates
# (errors="surrogateescape"); Go's encoder turns each such byte into one \ufffd escape.
_ESCAPED_BYTES = re.compile("[\udc80-\udcff]")

_HTML_SAFE = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_HTML_SAFE_RE = re.compile("[<>&\u2028\u2029]")


def dumps(obj: Any) -> str:
    """Compact JSON text with Go's escaping rules, without the trailing newline."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    # These characters never appear in JSON syntax outside string literals, so a textual
    # replacement cannot corrupt the document.
    text = _HTML_SAFE_RE.sub(lambda m: _HTML_SAFE[m.group(0)], text)
    return _ESCAPED_BYTES.sub(lambda _m: "\\ufffd", text)


def encode(obj: Any) -> bytes:
    """What `json.Encoder.Encode` writes: the document followed by a newline."""
    return dumps(obj).encode("utf-8") + b"\n"


def sorted_map[V](m: Mapping[str, V]) -> dict[str, V]:
    """A Go map as encoding/json emits it: keys in sorted (byte) order."""
    return {k: m[k] for k in sorted(m, key=lambda k: k.encode("utf-8", "surrogateescape"))}
