"""Raw client bytes never reach the log or a flow's error: they are replaced by their length.

mitmproxy quotes what it could not parse: "Invalid header line: b'Authorization Basic ...'",
"Client closed connection before completing request headers: b'GET / ...Authorization: ...'",
h11's "illegal header line b'...'". Each is a Python bytes literal of what the client sent, and
any of it may be a credential. mitmproxy's proxy layers log through one logger (that of
`mitmproxy.proxy.server`, `ConnectionHandler.log`), and h2's debug output (whole HEADERS frames)
through that of `_http_h2`; a filter on both rewrites every bytes literal in a message, or in an
attached traceback, to `b'<N bytes withheld>'`. A flow's error message
(saved with the flow, printed by mitmdump, logged by the addon) gets the same treatment in the
addon's `error` hook.
"""

from __future__ import annotations

import ast
import logging
import re
import traceback

from mitmproxy.proxy import server
from mitmproxy.proxy.layers.http import _http_h2

from . import seam

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


_FILTER = WithholdQuotedBytes()


def install() -> None:
    """Idempotent."""
    seam.pin(
        server.ConnectionHandler,
        "log",
        fingerprint="74a35bd8af54b361",
        why="every message of mitmproxy's proxy layers is logged through the logger of "
        "mitmproxy.proxy.server, where quoted client bytes are withheld",
    )
    seam.pin(
        _http_h2,
        "H2ConnectionLogger",
        fingerprint="a42c139244924263",
        why="h2's debug output (HEADERS with their values) goes through the logger of "
        "_http_h2, where quoted client bytes are withheld",
    )
    for module in (server, _http_h2):
        logger = logging.getLogger(module.__name__)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
