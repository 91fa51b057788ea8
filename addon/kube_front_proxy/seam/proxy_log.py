"""Quoted client bytes are withheld from the log lines of mitmproxy's proxy layers and of h2.

mitmproxy quotes what a client sent when it cannot parse it, credentials included
(observe/quoted_bytes.py), and logs it through loggers of its own: every message of its proxy layers
goes through the logger of `mitmproxy.proxy.server` (`ConnectionHandler.log`), and h2's debug
output (whole HEADERS frames) through that of `_http_h2`. No hook sees those lines, so
observe/quoted_bytes.py's filter is put on both loggers; nothing is replaced, and what this relies
on (the loggers those lines take) is pinned.
"""

from __future__ import annotations

import logging

from mitmproxy.proxy import server
from mitmproxy.proxy.layers.http import _http_h2

from kube_front_proxy.observe.quoted_bytes import WithholdQuotedBytes
from kube_front_proxy.seam import pin

_FILTER = WithholdQuotedBytes()


def install() -> None:
    """Idempotent."""
    pin(
        server.ConnectionHandler,
        "log",
        fingerprint="74a35bd8af54b361",
        why="every message of mitmproxy's proxy layers is logged through the logger of "
        "mitmproxy.proxy.server, where quoted client bytes are withheld",
    )
    pin(
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
