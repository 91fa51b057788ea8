"""Backpressure from an HTTP/2 client to the upstream: a client that reads slowly holds little.

mitmproxy 12.3.1 relays a response to an HTTP/2 client without any:

- `BufferedH2Connection.send_data` queues, without limit, what does not fit the client's
  flow-control window; a client that opens with SETTINGS_INITIAL_WINDOW_SIZE=0 and never reads
  makes the proxy queue the whole response (a 320 MiB pod log: RSS +390 MiB);
- its HTTP/2 connection to the upstream (`Http2Client`) advertises 2 GiB windows and
  acknowledges each DATA frame as soon as it has passed it on (`Http2Connection.
  handle_h2_event`), so the upstream never has to stop;
- an HTTP/1.1 upstream is read as fast as it sends: the read loop (`ConnectionHandler.
  handle_connection`) waits only for full socket write buffers (`drain_writers`), and the
  queue above is not one. (An HTTP/1.1 client is fine: its socket buffer fills, TCP pushes back.)

Corrected here, by the seam policy's `http2_stream_buffer_bytes` and
`http2_connection_buffer_bytes` (config `limits.http2_stream_buffer_kb`,
`limits.http2_connection_buffer_kb`):

- the upstream HTTP/2 connection advertises windows of the first per stream and the second per
  connection, and acknowledges (WINDOW_UPDATE) a stream's data only once
  the client connection has taken it off its queue: what the proxy holds from a stream is at
  most its window, from a connection at most the connection window;
- an HTTP/1.1 upstream connection is not read while the client's queue for its stream is over
  the first, or the client connection's whole queue over the second
  (`read_holds.upstream_holds`): its socket fills and TCP pushes back, as for an HTTP/1.1
  client.

After every event of an HTTP layer whose client speaks HTTP/2, `settle` looks at the client's
queue and lets each upstream connection of that client go on as far as it may.

No public hook sees flow control: addons get messages or body chunks (`flow.response.stream`),
never windows, queues or socket reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
from mitmproxy.proxy import commands, events, layer
from mitmproxy.proxy.layers.http import HttpLayer
from mitmproxy.proxy.layers.http._http1 import Http1Client
from mitmproxy.proxy.layers.http._http2 import Http2Client, Http2Connection, Http2Server
from mitmproxy.proxy.layers.http._http_h2 import BufferedH2Connection

from kube_front_proxy import seam
from kube_front_proxy.seam import read_holds


class HandedOn(events.Event):
    """To an upstream HTTP/2 connection: the client took data off its queue. Not an HttpEvent,
    which `Http2Client` would take for a new stream's."""


def queued_bytes(client: layer.Layer | None) -> dict[int, int]:
    """What the client connection has queued, per stream (nothing for an HTTP/1 client: its
    socket buffer is the queue, and TCP pushes back)."""
    if not isinstance(client, Http2Server):
        return {}
    return {
        stream_id: sum(len(chunk.data) for chunk in chunks)
        for stream_id, chunks in client.h2_conn.stream_buffers.items()
    }


def must_pause(stream_queued: int, connection_queued: int, policy: seam.Policy) -> bool:
    return (
        stream_queued > policy.http2_stream_buffer_bytes
        or connection_queued > policy.http2_connection_buffer_bytes
    )


class UpstreamH2Connection(BufferedH2Connection):
    """mitmproxy's HTTP/2 connection to the upstream, with bounded windows, acknowledging data
    once the client was handed it."""

    def __init__(
        self, config: h2.config.H2Configuration, stream_window: int, connection_window: int
    ) -> None:
        super().__init__(config)
        # As `Http2Client.__init__` sets up its connection: no server push.
        self.local_settings.enable_push = 0
        self.local_settings.initial_window_size = stream_window
        # Acknowledged at once, so that the preface carries them (mitmproxy's "hyper-h2 pitfall").
        self.local_settings.acknowledge()
        self.connection_window = connection_window
        self.unacknowledged: dict[int, int] = {}

    def initiate_connection(self) -> None:
        # Not mitmproxy's: it opens the connection window to 2 GiB.
        h2.connection.H2Connection.initiate_connection(self)
        self.increment_flow_control_window(
            self.connection_window - self.inbound_flow_control_window
        )

    def acknowledge_received_data(self, acknowledged_size: int, stream_id: int) -> None:
        # mitmproxy calls this as soon as it has passed the data on: only count it here.
        self.unacknowledged[stream_id] = self.unacknowledged.get(stream_id, 0) + acknowledged_size

    def acknowledge_handed_on(self, queued: Callable[[int], int]) -> None:
        """Acknowledge what the client is no longer queueing. `queued`: what the client still
        queues of one of this connection's streams (more than was received, when mitmproxy
        relays a body it had buffered: then nothing is acknowledged yet)."""
        if self.state_machine.state is h2.connection.ConnectionState.CLOSED:
            self.unacknowledged.clear()
            return
        for stream_id, count in list(self.unacknowledged.items()):
            handed_on = count - queued(stream_id)
            if handed_on <= 0:
                continue
            super().acknowledge_received_data(handed_on, stream_id)
            if handed_on == count:
                del self.unacknowledged[stream_id]
            else:
                self.unacknowledged[stream_id] = count - handed_on


def _http_layer(context_layers: list[layer.Layer]) -> HttpLayer | None:
    return next((x for x in reversed(context_layers) if isinstance(x, HttpLayer)), None)


def _client_layer(http_layer: HttpLayer) -> layer.Layer | None:
    return http_layer.connections.get(http_layer.context.client)


def _upstream_layer(stack: Any) -> layer.Layer | None:
    """The HTTP layer at the bottom of an upstream connection's stack (TLS, then mitmproxy's
    `HttpClient`, then `Http1Client` or `Http2Client`), once it exists."""
    for _ in range(4):
        if isinstance(stack, (Http1Client, Http2Client)):
            return stack
        stack = getattr(stack, "child_layer", None)
    return None


def _client_queue(upstream: Http2Client, queued: dict[int, int]) -> Callable[[int], int]:
    """What the client queues of one of the upstream connection's streams (by its own id)."""
    theirs = upstream.their_stream_id
    return lambda ours: queued.get(theirs.get(ours, 0), 0)


def _releasable(upstream: Http2Client, queued: dict[int, int]) -> bool:
    h2_conn = upstream.h2_conn
    # A closed layer hands every event to `done`, which takes no HandedOn.
    if not isinstance(h2_conn, UpstreamH2Connection) or upstream._handle_event == upstream.done:
        return False
    client_queue = _client_queue(upstream, queued)
    return any(count > client_queue(ours) for ours, count in h2_conn.unacknowledged.items())


def _settle(http_layer: HttpLayer) -> layer.CommandGenerator[None]:
    """Let each upstream connection of an HTTP/2 client go on as far as the client's queue
    allows: acknowledge what an HTTP/2 one has had handed on, hold or release an HTTP/1.1 one."""
    client = _client_layer(http_layer)
    if not isinstance(client, Http2Server):
        return
    queued = queued_bytes(client)
    total = sum(queued.values())
    for connection, stack in list(http_layer.connections.items()):
        upstream = _upstream_layer(stack)
        if isinstance(upstream, Http2Client):
            if _releasable(upstream, queued):
                yield from http_layer.event_to_child(stack, HandedOn())
        elif isinstance(upstream, Http1Client):
            stream = queued.get(upstream.stream_id or 0, 0)
            read_holds.upstream_holds.hold(connection, must_pause(stream, total, seam.policy))


def _settled_http_layer(self: HttpLayer, event: events.Event) -> layer.CommandGenerator[None]:
    yield from seam.original(HttpLayer, "_handle_event")(self, event)
    # Checked here, not only in _settle: this runs for every event of every connection.
    if isinstance(_client_layer(self), Http2Server):
        yield from _settle(self)


def _bounded_h2(self: Http2Connection, event: events.Event) -> layer.CommandGenerator[None]:
    handle_event = seam.original(Http2Connection, "_handle_event")
    if not isinstance(self, Http2Client):
        yield from handle_event(self, event)
        return
    if isinstance(event, events.Start):
        policy = seam.policy
        self.h2_conn = UpstreamH2Connection(
            self.h2_conf, policy.http2_stream_buffer_bytes, policy.http2_connection_buffer_bytes
        )
    if not isinstance(event, HandedOn):
        yield from handle_event(self, event)
    if not isinstance(event, (HandedOn, events.DataReceived)):
        return
    h2_conn = self.h2_conn
    http_layer = _http_layer(self.context.layers)
    if not isinstance(h2_conn, UpstreamH2Connection) or http_layer is None:
        return
    h2_conn.acknowledge_handed_on(_client_queue(self, queued_bytes(_client_layer(http_layer))))
    data = h2_conn.data_to_send()
    if data:
        yield commands.SendData(self.conn, data)


def install() -> None:
    """Bound what a slow HTTP/2 client makes the proxy hold; idempotent."""
    read_holds.install()
    seam.replace(
        HttpLayer,
        "_handle_event",
        _settled_http_layer,
        fingerprint="5dbe5ae099431ea0",
        why="after each event, upstream connections go on as far as the HTTP/2 client's queue "
        "allows",
    )
    seam.replace(
        Http2Connection,
        "_handle_event",
        _bounded_h2,
        fingerprint="9f3b238e7809db1f",
        why="upstream HTTP/2: bounded windows, data acknowledged once handed on",
    )
    for owner, attribute, fingerprint, why in _RELIED_ON:
        seam.pin(owner, attribute, fingerprint=fingerprint, why=why)


# What the patch relies on without replacing it.
_RELIED_ON: list[tuple[Any, str, str, str]] = [
    (BufferedH2Connection, "send_data", "d432a0066342e7eb",
     "the client's queue is `stream_buffers`"),
    (BufferedH2Connection, "initiate_connection", "12a2f3bb35ae8c55",
     "replaced by UpstreamH2Connection's (no 2 GiB connection window)"),
    (Http2Client, "__init__", "41fdd54ed9817b1a",
     "UpstreamH2Connection sets up the connection as it does"),
    (Http2Client, "_handle_event", "59d3a082417bb2f0",
     "Start, data and other events reach Http2Connection._handle_event"),
    (Http2Connection, "handle_h2_event", "a2463afad6ddeedc",
     "acknowledges data right after passing it on"),
    (HttpLayer, "get_connection", "aa9d4f00ee025e40",
     "an upstream stack ends in HttpClient's child_layer"),
]  # fmt: skip
