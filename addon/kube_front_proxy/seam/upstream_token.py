"""Impersonation mode: the service-account token only in the bytes written to an API server.

The token must not be in a flow (mitmweb shows flows, `-w` saves them), so a request carries a
placeholder (identity/service_account.py) up to the last moment, and no hook runs after a request
head is encoded: mitmproxy's HTTP/1 request-head encoder (`http1.assemble_request_head`, which
`Http1Client.send` calls) is wrapped to hand each head to the seam policy's `upstream_token`
(a TokenInjector), which puts the token in place of the placeholder for the configured servers.
"""

from __future__ import annotations

from mitmproxy import http
from mitmproxy.net.http import http1

from kube_front_proxy import seam
from kube_front_proxy.seam import original, replace


def _assemble_request_head(request: http.Request) -> bytes:
    head: bytes = original(http1, "assemble_request_head")(request)
    return seam.policy.upstream_token.inject(request, head)


def install() -> None:
    """Idempotent; affects only heads that carry the placeholder."""
    replace(
        http1,
        "assemble_request_head",
        _assemble_request_head,
        fingerprint="e034304c8d8989d1",
        why="impersonation mode: the service-account token replaces the placeholder only in "
        "heads written to a configured API server",
    )
