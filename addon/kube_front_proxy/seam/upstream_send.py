"""The last step before a request is written to the API server: it goes on only if its client
has not reset it meanwhile, and if it is still what the proxy vouched for.

mitmproxy looks for a kill or a client's reset after each hook, not once the upstream
connection is open, and no public hook runs between the end of the hooks and the write:

- a request whose stream the client reset while its upstream connection was being opened
  would still be forwarded (HTTP/2 rapid reset, see rapid_reset.py; with an HTTP/1.1 API
  server every HTTP/2 request opens a connection of its own);
- mitmweb's Intercept holds a request after every `request` hook has run, and its edits
  (`PUT /flows/<id>`, then resume) change the flow in place with no hook at all (the web app
  updates its own view directly): another X-Remote-User, a system:masters group, or the
  user's request turned into another one would be written upstream over the front-proxy
  certificate.

So `HttpStream.make_server_connection` is wrapped: every send takes it (a buffered request, a
streamed request's head, upstream_retry's second attempt), and once it has the connection, the
last wait before the write, the request is compared with its seal (identity/vouched.py). A changed
one is killed as mitmweb's own Kill would kill it, and mitmproxy's `check_killed` then ends it, as
it ends one the client reset: the client's stream is reset (HTTP/2) or its connection closed
(HTTP/1), and the flow records the error.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Any

from mitmproxy.proxy import commands
from mitmproxy.proxy.layers.http import HttpStream

from kube_front_proxy.identity.vouched import ledger
from kube_front_proxy.seam import original, pin, replace

logger = logging.getLogger("kube_front_proxy")

_original: Any = original(HttpStream, "make_server_connection")


def install() -> None:
    """Idempotent."""
    replace(
        HttpStream,
        "make_server_connection",
        _make_server_connection,
        fingerprint="a08ce3538129b5c4",
        why="no request is written upstream once its client reset it or after it was changed "
        "from what the proxy vouched for (mitmweb edits)",
    )
    pin(
        HttpStream,
        "check_killed",
        fingerprint="4cec665b2f0dc0f0",
        why="ends a killed flow, or one whose client reset it during a pause (upstream_send)",
    )


def _make_server_connection(self: HttpStream) -> Generator[commands.Command, Any, bool]:
    connected: bool = yield from _original(self)
    if not connected:
        return False
    changed = ledger.changed(self.flow)
    if changed and self.flow.killable:
        request = self.flow.request
        logger.warning(
            "kube-front-proxy: %s %s not sent: %s changed after the proxy vouched for it "
            "(mitmweb or another addon)",
            request.method,
            request.path.split("?", 1)[0],
            changed,
        )
        self.flow.kill()  # type: ignore[no-untyped-call]
    killed: bool = yield from self.check_killed(True)
    return not killed
