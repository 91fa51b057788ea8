"""A secret in a response the proxy answers itself reaches the client, and no flow.

The token endpoint (authn/token_endpoint.py) answers with a new session token. Flows are shown in
mitmweb, printed by mitmdump and saved with `-w`, all from the flow object in (or after) the
`response` hook, and mitmproxy then sends `flow.response.raw_content` as it stands after every
`response` hook: no public hook can send bytes that differ from what the flow keeps. So the
flow's body holds a placeholder of the secret's length (the Content-Length stays right), and
`HttpStream.send_response` is wrapped: for a flow registered here, the placeholder is swapped
for the secret in the one ResponseData event written to the client, and forgotten. A flow
whose body no longer holds the placeholder (edited in mitmweb) is sent as it stands.
"""

from __future__ import annotations

import weakref
from collections.abc import Generator
from typing import Any

from mitmproxy import http
from mitmproxy.proxy import commands
from mitmproxy.proxy.layers.http import HttpStream, SendHttp
from mitmproxy.proxy.layers.http._events import ResponseData

from kube_front_proxy.seam import original, replace

_Commands = Generator[commands.Command, Any, None]


class Withheld:
    """Secrets waiting to be written to a flow's client; kept by the flow, never in it."""

    def __init__(self) -> None:
        # Keyed by the flow object: an entry goes with its flow if it is never sent (killed).
        self._secrets: weakref.WeakKeyDictionary[http.HTTPFlow, tuple[bytes, bytes]] = (
            weakref.WeakKeyDictionary()
        )

    def hold(self, flow: http.HTTPFlow, placeholder: bytes, secret: bytes) -> None:
        if len(placeholder) != len(secret):
            raise ValueError("the placeholder must be as long as the secret")
        self._secrets[flow] = (placeholder, secret)

    def __len__(self) -> int:
        return len(self._secrets)

    def reveal(self, flow: http.HTTPFlow, data: bytes) -> bytes:
        found = self._secrets.pop(flow, None)
        if found is None:
            return data
        placeholder, secret = found
        return data.replace(placeholder, secret, 1)

    def forget(self, flow: http.HTTPFlow) -> None:
        self._secrets.pop(flow, None)


withheld = Withheld()
_send_response: Any = original(HttpStream, "send_response")


def install() -> None:
    """Idempotent."""
    replace(
        HttpStream,
        "send_response",
        _revealing_send_response,
        fingerprint="c2af2f99548c24e1",
        why="write a withheld secret into the response bytes sent to the client, not the flow",
    )


def _revealing_send_response(self: HttpStream, already_streamed: bool = False) -> _Commands:
    sending = _send_response(self, already_streamed)
    flow = self.flow
    try:
        reply = None
        while True:
            try:
                command = sending.send(reply)
            except StopIteration:
                return
            # `withheld` first: it is empty but while a token is answered, and the checks
            # below ran for every command of every response.
            if (
                withheld
                and isinstance(command, SendHttp)
                and isinstance(command.event, ResponseData)
                and command.connection is self.context.client
            ):
                data = withheld.reveal(flow, command.event.data)
                command = SendHttp(ResponseData(command.event.stream_id, data), command.connection)
            reply = yield command
    finally:
        if withheld:
            withheld.forget(flow)
