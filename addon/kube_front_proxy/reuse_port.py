"""SO_REUSEPORT for the proxy's own listener (listen.reuse_port), so N processes share a port.

With the option set on every socket bound to one address, Linux accepts all the binds and
spreads new connections across the processes (by a hash of the client's address and port).
mitmproxy opens its TCP listeners with `asyncio.start_server(handler, host, port)` in
`AsyncioServerInstance.listen` and has no option for reuse_port, so that method is wrapped:
only the listener of the one mode named here is opened with reuse_port=True; every other
listener (mitmproxy's default one, and ours when not shared) goes through mitmproxy's code
unchanged.

A shared listener is TCP only. An https reverse mode also opens a UDP socket on the same port
for HTTP/3, and mitmproxy_rs binds that one without SO_REUSEPORT, so a second process could not
start; kubectl and client-go speak HTTP/1.1 and HTTP/2, over TCP.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mitmproxy.proxy.mode_servers import AsyncioServerInstance
from mitmproxy.proxy.mode_specs import ProxyMode

_mitmproxy_listen = AsyncioServerInstance.listen
_shared: ProxyMode | None = None


async def _listen(self: AsyncioServerInstance[Any], host: str, port: int) -> list[Any]:
    if self.mode != _shared or not port:
        return await _mitmproxy_listen(self, host, port)
    return [await asyncio.start_server(self.handle_stream, host, port, reuse_port=True)]


def share_port(mode: ProxyMode | None) -> None:
    """Open `mode`'s listener with SO_REUSEPORT from its next start on; None shares none."""
    global _shared
    _shared = mode
    AsyncioServerInstance.listen = _listen  # type: ignore[method-assign]
