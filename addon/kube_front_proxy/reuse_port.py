"""The proxy's own listener: TCP only, and with SO_REUSEPORT (listen.reuse_port) so that N
processes share a port.

With the option set on every socket bound to one address, Linux accepts all the binds and
spreads new connections across the processes (by a hash of the client's address and port).
mitmproxy opens its TCP listeners with `asyncio.start_server(handler, host, port)` in
`AsyncioServerInstance.listen` and has no option for reuse_port, so that method is wrapped:
only the listener of the one mode named here is opened with reuse_port=True; every other
listener (mitmproxy's default one, and ours when not shared) goes through mitmproxy's code
unchanged.

The listener is TCP only, shared or not. An https reverse mode also opens a UDP socket on the
same port for HTTP/3, whose TLS this addon does not set up (mitmproxy would show its own CA's
certificate there), and which mitmproxy_rs binds without SO_REUSEPORT; kubectl and client-go
speak HTTP/1.1 and HTTP/2, over TCP.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mitmproxy.proxy.mode_servers import AsyncioServerInstance
from mitmproxy.proxy.mode_specs import ProxyMode

_mitmproxy_listen = AsyncioServerInstance.listen
_ours: ProxyMode | None = None
_reuse_port = False


async def _listen(self: AsyncioServerInstance[Any], host: str, port: int) -> list[Any]:
    if self.mode != _ours or not port:
        return await _mitmproxy_listen(self, host, port)
    return [await asyncio.start_server(self.handle_stream, host, port, reuse_port=_reuse_port)]


def own_listener(mode: ProxyMode | None, reuse_port: bool) -> None:
    """Open `mode`'s listener over TCP only, with SO_REUSEPORT if asked, from its next start."""
    global _ours, _reuse_port
    _ours, _reuse_port = mode, reuse_port
    AsyncioServerInstance.listen = _listen  # type: ignore[method-assign]
