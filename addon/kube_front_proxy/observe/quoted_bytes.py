"""Raw client bytes never reach the log or a flow's error: they are replaced by their length.

mitmproxy quotes what it could not parse: "Invalid header line: b'Authorization Basic ...'",
"Client closed connection before completing request headers: b'GET / ...Authorization: ...'",
h11's "illegal header line b'...'". Each is a Python bytes literal of what the client sent, and
any of it may be a credential. `WithholdQuotedBytes` rewrites every bytes literal in a message,
or in an attached traceback, to `b'<N bytes withheld>'`; seam/proxy_log.py puts it on the
loggers mitmproxy's proxy layers and h2 log through. A flow's error message (saved with the
flow, printed by mitmdump, logged by the addon) gets the same treatment in the addon's `error`
hook.
"""

from __future__ import annotations

import ast
import logging
import re
import traceback

# A Python bytes literal as repr() writes it; an unterminated one (a cut message) runs to the end.
_BYTES_LITERAL = re.compile(r"""(?<![\w])b(?:'(?:[^'\\]|\\.)*(?:'|$)|"(?:[^"\\]|\\.)*(?:"|$))""",
                            re.DOTALL)  # fmt: skip


def _withheld(match: re.Match[str]) -> str:
    try:
        size = f"{len(ast.literal_eval(match.group(0)))} bytes"
    except (ValueError, SyntaxError):
        size = "bytes"
    return f"b'<{size} withheld>'"


def withhold_bytes(text: str) -> str:
    """text with every quoted bytes literal replaced by its length."""
    return _BYTES_LITERAL.sub(_withheld, text) if "b'" in text or 'b"' in text else text


class WithholdQuotedBytes(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            # Rendered here, because the handler would render the exception text unfiltered.
            message += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
            record.exc_info = None
            record.exc_text = None
        record.msg = withhold_bytes(message)
        record.args = ()
        return True
