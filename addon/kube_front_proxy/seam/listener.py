"""The proxy's own listener: TCP only, and with SO_REUSEPORT (listen.reuse_port) so that N
processes share a port.

With the option set on every socket bound to one address, Linux accepts all the binds and
spreads new connections across the processes (by a hash of the client's address and port).
mitmproxy opens its TCP listeners with `asyncio.start_server(handler, host, port)` in
`AsyncioServerInstance.listen` and has no option for reuse_port, so that method is replaced:
the listener of the seam policy's `listener` mode is opened here, over TCP only, with
reuse_port as the policy's `reuse_port` says; every other listener (mitmproxy's default one)
goes through mitmproxy's code unchanged.

The listener is TCP only, shared or not. An https reverse mode also opens a UDP socket on the
same port for HTTP/3, whose TLS this addon does not set up (mitmproxy would show its own CA's
certificate there), and which mitmproxy_rs binds without SO_REUSEPORT; kubectl and client-go
speak HTTP/1.1 and HTTP/2, over TCP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from mitmproxy.proxy.mode_servers import AsyncioServerInstance

from kube_front_proxy import seam
from kube_front_proxy.seam import original, replace


async def _listen(self: AsyncioServerInstance[Any], host: str, port: int) -> list[Any]:
    policy = seam.policy
    if self.mode != policy.listener or not port:
        listen: Callable[..., Awaitable[list[Any]]] = original(AsyncioServerInstance, "listen")
        return await listen(self, host, port)
    # mitmproxy's TCP branch, with reuse_port.
    return [
        await asyncio.start_server(self.handle_stream, host, port, reuse_port=policy.reuse_port)
    ]


def install() -> None:
    """Idempotent; the listener is opened as the policy says at its next start."""
    replace(
        AsyncioServerInstance,
        "listen",
        _listen,
        fingerprint="13c0697172a3de67",
        why="the proxy's listener: TCP only (no UDP socket for HTTP/3), with SO_REUSEPORT "
        "when listen.reuse_port is set",
    )
