"""Holding a connection's read loop: the one way to make mitmproxy stop reading for a while.

mitmproxy's read loop (`ConnectionHandler.handle_connection`) reads a chunk, hands it to the
layers, then awaits `drain_writers` so that it reads no faster than it can write, and reads
again. Nothing else holds it: while a hook runs, whatever arrives is queued in the paused layer
without bound. `drain_writers` is therefore replaced (once, for everyone) by one that drains as
before and then waits while the connection is held:

- `holds`: the client's read loop only (a request head being decided, body_after_login.py);
- `session_holds`: every read loop of the connection, the client's and the API server's (an
  upgraded session's message hook in flight, upgraded_backpressure.py);
- `upstream_holds`: the read loop of one API server connection (an HTTP/1.1 response while its
  HTTP/2 client queues too much of it, h2_flow_control.py).

`holds` and `session_holds` are counted per client connection id and nest; `upstream_holds` is
on or off per connection, and forgotten with it.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import Counter
from typing import Any

from mitmproxy.connection import Connection
from mitmproxy.proxy.server import ConnectionHandler

from kube_front_proxy.seam import original, pin, replace


class ReadHolds:
    """Client connections (by id) that are not to be read for now; holds nest."""

    def __init__(self) -> None:
        self._holds: Counter[str] = Counter()
        self._released: dict[str, asyncio.Event] = {}

    def hold(self, client_id: str) -> None:
        self._holds[client_id] += 1

    def release(self, client_id: str) -> None:
        self._holds[client_id] -= 1
        if self._holds[client_id] <= 0:
            del self._holds[client_id]
            released = self._released.pop(client_id, None)
            if released:
                released.set()

    def held(self, client_id: str) -> bool:
        return client_id in self._holds

    async def wait(self, client_id: str) -> None:
        while client_id in self._holds:
            await self._released.setdefault(client_id, asyncio.Event()).wait()


class ConnectionHolds:
    """Single connections whose read loop is not to run for now."""

    def __init__(self) -> None:
        self._held: weakref.WeakKeyDictionary[Connection, asyncio.Event] = (
            weakref.WeakKeyDictionary()
        )

    def hold(self, connection: Connection, held: bool) -> None:
        released = self._held.get(connection)
        if held and released is None:
            self._held[connection] = asyncio.Event()
        elif not held and released is not None:
            del self._held[connection]
            released.set()

    async def wait(self, handler: ConnectionHandler) -> None:
        """Wait while the connection the current task reads is held."""
        if not self._held:
            return
        task = asyncio.current_task()
        for connection, io in list(handler.transports.items()):
            if io.handler is task:
                released = self._held.get(connection)
                if released is not None:
                    await released.wait()
                return


holds = ReadHolds()
session_holds = ReadHolds()
upstream_holds = ConnectionHolds()


def install() -> None:
    """Idempotent."""
    replace(
        ConnectionHandler,
        "drain_writers",
        _drain_writers,
        fingerprint="e7d7a0d4bdd7ddf8",
        why="a read loop also waits while its connection is held (read_holds)",
    )
    pin(
        ConnectionHandler,
        "handle_connection",
        fingerprint="2cd24c42884752ac",
        why="its read loop awaits drain_writers after each read (read_holds)",
    )


_drain_writers_original: Any = original(ConnectionHandler, "drain_writers")


async def _drain_writers(self: ConnectionHandler) -> None:
    await _drain_writers_original(self)
    client_id = self.client.id
    if session_holds.held(client_id):
        await session_holds.wait(client_id)
    if holds.held(client_id):
        io = self.transports.get(self.client)
        if io is not None and io.handler is asyncio.current_task():
            await holds.wait(client_id)
    await upstream_holds.wait(self)
