"""Closing a connection from outside mitmproxy's layers: a client past its deadline
(client/deadlines.py), an API server past its response timeout (upstream/response_timeout.py).

mitmproxy closes a connection only when a layer yields `CloseConnection`, and no hook can make
a layer do that at a time of the proxy's choosing (a timer). So the connection's handler is
found where mitmproxy keeps it (the proxyserver addon's `connections`, by client id, with the
handler's `transports`) and its `close_connection` called, as the CloseConnection command would:
the connection's reader is cancelled, and the layers hear that it closed as if the peer had
closed it. Nothing is replaced; what this relies on is pinned.
"""

from __future__ import annotations

from typing import Any

from mitmproxy import ctx, http
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy.mode_servers import ServerInstance
from mitmproxy.proxy.server import ConnectionHandler

from kube_front_proxy.seam import pin


def install() -> None:
    """Idempotent."""
    pin(
        ServerInstance,
        "handle_stream",
        fingerprint="1c3c1b86397b3c55",
        why="registers each connection's handler under its client id (close_connection)",
    )
    pin(
        Proxyserver,
        "register_connection",
        fingerprint="5bfe902819203c7b",
        why="keeps the handlers in `connections` while their connections live (close_connection)",
    )
    pin(
        ConnectionHandler,
        "__init__",
        fingerprint="d3c0f7253517568f",
        why="a handler's `transports` holds each open connection's reader (close_connection)",
    )
    pin(
        ConnectionHandler,
        "close_connection",
        fingerprint="9ec60a685e608fd3",
        why="what the CloseConnection command does: cancels the connection's reader",
    )


def _handler(client_id: str) -> Any:
    proxyserver: Proxyserver = ctx.master.addons.get("proxyserver")  # type: ignore[no-untyped-call]
    return proxyserver.connections.get(client_id)


def close_client_connection(client_id: str) -> str | None:
    """Close a client connection; the client's address, or None if it was not open."""
    handler = _handler(client_id)
    if handler is None:
        return None
    io = handler.transports.get(handler.client)
    if io is None or io.handler is None:
        return None  # not reading yet (or no more): nothing to cancel
    handler.close_connection(handler.client)
    return str(handler.client.peername[0])


def close_upstream_connection(flow: http.HTTPFlow) -> None:
    """Close the flow's upstream connection.

    On an HTTP/2 upstream connection this ends the other requests on it as well: a client's
    requests share one connection there.
    """
    handler = _handler(flow.client_conn.id)
    if handler is not None and flow.server_conn in handler.transports:
        handler.close_connection(flow.server_conn)
