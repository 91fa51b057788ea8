"""An API server's HTTP/2 GOAWAY ends its connection the way RFC 9113 section 6.8 says.

kube-apiserver sends GOAWAY (NO_ERROR, last stream id = the highest stream it took) with
`--goaway-chance`, after every unauthenticated HTTP/2 request (1.29 and later), when a
connection has been idle for 90 s and when it shuts down; Go's server writes it ahead of the
response that asked for it. mitmproxy 12.3.1 lost those responses:

- h2 moves its connection state to CLOSED when GOAWAY arrives, so every later frame, the
  HEADERS and DATA of streams the server is still answering included, raises
  `Invalid input ConnectionInputs.RECV_HEADERS in state ConnectionState.CLOSED`;
- mitmproxy's `Http2Client` then closes the connection and fails every stream on it with a
  502, the ones the server never processed too (its own comment says it should only end the
  streams above last_stream_id, and lacks a way to keep a connection that cannot be reused).

With this module:

- an h2 client connection takes GOAWAY as an event, not as the end of its state machine
  (`_receive_goaway_frame`): streams up to last_stream_id go on and their answers reach the
  client, whatever status they carry (a 401 included);
- `Http2Client` fails each stream above last_stream_id, and each request still queued for the
  connection, with `Unprocessed`, a ResponseProtocolError: the server never saw them, so
  upstream_retry sends them again on a new connection, whatever their method;
- the connection is marked draining: `GetHttpConnection.connection_spec_matches` no longer
  offers it to new requests, which open a new connection; it closes once its last stream
  ends (or when the server closes it).

No public hook sees frames or chooses connections, and h2 has no setting for this; so four
functions are replaced, each wrapping the original (fingerprinted in the seam).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import Any

import h2.connection
import h2.errors
import h2.events
from hyperframe.frame import GoAwayFrame
from mitmproxy.connection import Connection
from mitmproxy.proxy import events, layer
from mitmproxy.proxy.layers.http import GetHttpConnection
from mitmproxy.proxy.layers.http._base import ReceiveHttp
from mitmproxy.proxy.layers.http._events import (
    ErrorCode,
    HttpEvent,
    RequestHeaders,
    RequestProtocolError,
    ResponseProtocolError,
)
from mitmproxy.proxy.layers.http._http2 import Http2Client

from kube_front_proxy import seam

logger = logging.getLogger("kube_front_proxy")

_draining: weakref.WeakSet[Connection] = weakref.WeakSet()


class Unprocessed(ResponseProtocolError):
    """The server says it never processed this request (RFC 9113 section 8.7): sending it
    again, on another connection, is safe whatever its method."""

    def __init__(self, stream_id: int, message: str) -> None:
        super().__init__(stream_id, message, ErrorCode.GENERIC_SERVER_ERROR)


def unprocessed_message(last_stream_id: int) -> str:
    return (
        f"the API server sent GOAWAY (last stream {last_stream_id}) before processing the request"
    )


# -- h2: GOAWAY does not close a client connection's state machine ---------------------------

_receive_goaway: Callable[..., Any] = seam.original(
    h2.connection.H2Connection, "_receive_goaway_frame"
)


def _receive_goaway_frame(
    conn: h2.connection.H2Connection, frame: GoAwayFrame
) -> tuple[list[Any], list[h2.events.Event]]:
    if not conn.config.client_side:
        result: tuple[list[Any], list[h2.events.Event]] = _receive_goaway(conn, frame)
        return result
    # As h2's own, without closing the state machine (the streams up to last_stream_id still
    # receive) or clearing the frames queued to send (acknowledgements among them).
    event = h2.events.ConnectionTerminated()
    event.error_code = h2.errors._error_code_from_int(frame.error_code)
    event.last_stream_id = frame.last_stream_id
    event.additional_data = frame.additional_data or None
    return [], [event]


# -- mitmproxy: streams above last_stream_id are refused, the connection drains --------------

_handle_h2_event: Callable[..., layer.CommandGenerator[bool]] = seam.original(
    Http2Client, "handle_h2_event"
)
_handle_event: Callable[..., layer.CommandGenerator[None]] = seam.original(
    Http2Client, "_handle_event"
)
_spec_matches: Callable[[GetHttpConnection, Connection], bool] = seam.original(
    GetHttpConnection, "connection_spec_matches"
)


def _drained(client: Http2Client) -> bool:
    # `streams` is mitmproxy's view: a stream leaves it once mitmproxy has passed on its end.
    # (h2's view runs ahead: it reads a whole batch of frames before mitmproxy sees any.)
    return client.conn in _draining and not client.streams and not client.stream_queue


def _closed(client: Http2Client) -> bool:
    # close_connection hands every later event to `done`.
    return bool(client._handle_event == client.done)


def _close_drained(client: Http2Client) -> layer.CommandGenerator[None]:
    yield from client.close_connection("HTTP/2 GOAWAY: no stream left")


def _on_h2_event(client: Http2Client, event: h2.events.Event) -> layer.CommandGenerator[bool]:
    if isinstance(event, h2.events.ConnectionTerminated):
        yield from _on_goaway(client, event)
    elif (yield from _handle_h2_event(client, event)):
        return True
    if _drained(client):
        yield from _close_drained(client)
        return True
    return False


def _on_goaway(
    client: Http2Client, event: h2.events.ConnectionTerminated
) -> layer.CommandGenerator[None]:
    last = event.last_stream_id or 0
    if event.error_code != h2.errors.ErrorCodes.NO_ERROR:
        logger.warning(
            "kube-front-proxy: API server sent GOAWAY %s, last stream %s: %r",
            event.error_code,
            last,
            event.additional_data,
        )
    _draining.add(client.conn)
    message = unprocessed_message(last)
    for stream_id in sorted(client.streams):
        if stream_id > last:
            del client.streams[stream_id]
            # The server ignores it; h2 forgets it (and mitmproxy's stream count drops).
            if not client.is_closed(stream_id):
                client.h2_conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
            # Stream ids here are the connection's own: Http2Client maps them back.
            yield ReceiveHttp(Unprocessed(stream_id, message))


def _on_event(client: Http2Client, event: events.Event) -> layer.CommandGenerator[None]:
    ours = client.our_stream_id.get(event.stream_id) if isinstance(event, HttpEvent) else None
    if client.conn in _draining and isinstance(event, HttpEvent) and ours is None:
        # A request that never reached this connection: a new one takes it.
        if isinstance(event, RequestHeaders):
            yield ReceiveHttp(Unprocessed(event.stream_id, "HTTP/2 connection draining"))
        return
    yield from _handle_event(client, event)
    if (
        isinstance(event, (RequestProtocolError, ResponseProtocolError))
        and ours is not None
        and client.is_closed(ours)
    ):
        # mitmproxy reset the stream itself and keeps its id in `streams` for good: the
        # server's later frames for it are dropped by h2, so nothing is waited for.
        client.streams.pop(ours, None)
    if client.conn in _draining and client.stream_queue:
        # Queued for a free stream slot of a connection that will never have one.
        queued = list(client.stream_queue)
        client.stream_queue.clear()
        for stream_id in queued:
            yield ReceiveHttp(Unprocessed(stream_id, "HTTP/2 connection draining"))
    if not _closed(client) and _drained(client):
        yield from _close_drained(client)


def _connection_spec_matches(command: GetHttpConnection, connection: Connection) -> bool:
    return _spec_matches(command, connection) and connection not in _draining


def install() -> None:
    """Install the four replacements (idempotent)."""
    seam.pin(
        h2.connection.H2Connection,
        "__init__",
        fingerprint="e9d1cb450444c6be",
        why="its frame dispatch table binds _receive_goaway_frame when a connection is made",
    )
    seam.pin(
        Http2Client,
        "close_connection",
        fingerprint="b871902060df75b6",
        why="closes the connection, fails the streams left in `streams`, then ignores events",
    )
    seam.replace(
        h2.connection.H2Connection,
        "_receive_goaway_frame",
        _receive_goaway_frame,
        fingerprint="54040698c5b5c4a3",
        why="an h2 client connection keeps receiving the streams up to GOAWAY's last stream id",
    )
    seam.replace(
        Http2Client,
        "handle_h2_event",
        _on_h2_event,
        fingerprint="a3ffa2ebf8bb2daa",
        why="GOAWAY refuses the streams above its last stream id and drains the connection",
    )
    seam.replace(
        Http2Client,
        "_handle_event",
        _on_event,
        fingerprint="59d3a082417bb2f0",
        why="a draining connection refuses requests it has not started (queued ones too)",
    )
    seam.replace(
        GetHttpConnection,
        "connection_spec_matches",
        _connection_spec_matches,
        fingerprint="94b6c0455ac2b1b7",
        why="a draining HTTP/2 connection is never reused",
    )
