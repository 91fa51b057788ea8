"""Go's `%q` verb (`strconv.Quote`), as kube-apiserver's error messages use it.

`forbiddenMessage` and `InternalError` (`k8s.io/apiserver pkg/endpoints/handlers/responsewriters/
errors.go`) and `NewForbidden` (`k8s.io/apimachinery pkg/api/errors/errors.go`) build their text
with `%q`. That is not a JSON string: `<`, `>` and `&` stay as they are (the JSON encoder escapes
them later), printable non-ASCII stays literal, and bytes that are not UTF-8 become `\\xNN`.
"""

from __future__ import annotations

_SHORT_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
    '"': '\\"',
}


def _escape(ch: str) -> str:
    if ch in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[ch]
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:
        # A raw byte carried as a surrogate escape: invalid UTF-8 in the Go string.
        return f"\\x{code - 0xDC00:02x}"
    # unicode.IsPrint: letters, marks, numbers, punctuation, symbols and the ASCII space.
    if ch == " " or ch.isprintable():
        return ch
    if code < 0x80:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def quote(s: str) -> str:
    """`strconv.Quote(s)`."""
    return '"' + "".join(_escape(ch) for ch in s) + '"'
