"""A request body is read only after its login succeeded.

mitmproxy reads a request body as it arrives, whatever its addons decide:

- while the requestheaders hook runs (where the login is checked: a bcrypt check on a worker
  thread, an OIDC key fetch), its read loop goes on reading the client connection, and the body
  piles up in the paused HttpStream (HTTP/2 opens its windows to 2^31-1, so nothing pushes back);
- a request that hook answered (401, 429, 403, ...) is answered only once its whole body has
  been read and stored, up to `limits.max_request_body_mb`;
- `Expect: 100-continue` gets its `100` before that answer, inviting the body.

Thirty clients without a login, each sending 3 MiB, grew the proxy by about 150 MB. No hook can
stop mitmproxy reading, so:

- `HttpStream.state_wait_for_request_headers`, where a request head is handled, is replaced:
  while a request with a body to come is decided (hooks, upstream connection), its client
  connection is not read. A request the hook answered gets no `100`, and its answer at once:
  over HTTP/1 with `Connection: close`, and the connection is closed (the body is never
  parsed; lingering_close.py: the client still reads the answer while it sends on); over
  HTTP/2 the stream is reset with CANCEL after the answer (RFC 9113 8.1), and DATA still in
  flight is dropped by h2 on arrival.
- the client's read loop is held (read_holds.py) while one of its requests is decided, so TCP
  pushes back on the client as nginx's does.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from mitmproxy.proxy import commands
from mitmproxy.proxy.layers.http import HttpStream, SendHttp
from mitmproxy.proxy.layers.http._events import (
    ErrorCode,
    RequestEndOfMessage,
    RequestHeaders,
    ResponseHeaders,
    ResponseProtocolError,
)

from kube_front_proxy.seam import lingering_close, original, pin, read_holds, replace
from kube_front_proxy.seam.read_holds import holds

_Commands = Generator[commands.Command, Any, None]


def _is_continue(command: commands.Command) -> bool:
    return (
        isinstance(command, SendHttp)
        and isinstance(command.event, ResponseHeaders)
        and command.event.response.status_code == 100
    )


def _answer_unread(stream: HttpStream) -> _Commands:
    """Answer a request whose answer a hook set, leaving its body unread."""
    assert stream.flow.response
    http2 = stream.flow.request.is_http2
    if not http2:
        stream.flow.response.headers["connection"] = "close"
        lingering_close.after_final_answer(stream.context.client)
    # The request ends where it stands: mitmproxy's own path for a request a hook answered
    # (request, responseheaders and response hooks, then the answer) runs from here.
    yield from stream.state_consume_request_body(RequestEndOfMessage(stream.stream_id))
    if stream.client_state != stream.state_done:
        return  # killed meanwhile: mitmproxy has ended it
    if http2:
        cancel = ResponseProtocolError(stream.stream_id, "body not read", ErrorCode.CANCEL)
        yield SendHttp(cancel, stream.context.client)
    else:
        yield commands.CloseConnection(stream.context.client)
    # What the client sent meanwhile (queued while the hooks ran) is dropped unread.
    stream.client_state = stream.state_errored


def install() -> None:
    """Idempotent."""
    replace(
        HttpStream,
        "state_wait_for_request_headers",
        _state_wait_for_request_headers,
        fingerprint="85b959d19c359321",
        why="hold the client's reads while a request head is decided; answer a refused "
        "request without its body, and without a 100 Continue",
    )
    pin(
        HttpStream,
        "state_consume_request_body",
        fingerprint="e3ee3fd9f617f517",
        why="its end-of-message branch answers a request a hook answered (body_after_login)",
    )
    read_holds.install()


_handle_head: Any = original(HttpStream, "state_wait_for_request_headers")


def _state_wait_for_request_headers(self: HttpStream, event: RequestHeaders) -> _Commands:
    body_follows = not event.end_stream
    client_id = self.context.client.id
    if body_follows:
        holds.hold(client_id)
    handled = _handle_head(self, event)
    try:
        reply = None
        while True:
            try:
                command = handled.send(reply)
            except StopIteration:
                break
            if self.flow.response is not None and _is_continue(command):
                reply = None  # refused: the body is not wanted
                continue
            reply = yield command
        refused = self.flow.response is not None
        if body_follows and refused and self.client_state == self.state_consume_request_body:
            yield from _answer_unread(self)
    finally:
        handled.close()
        if body_follows:
            holds.release(client_id)
