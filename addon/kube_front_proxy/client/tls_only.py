"""The listener speaks TLS only: a connection whose first byte does not open a TLS record is
refused before anything on it is read as a request.

mitmproxy's reverse mode adds TLS only when a connection's first bytes look like a TLS record
(`next_layer.NextLayer._setup_reverse_proxy`) and serves plain HTTP otherwise, so
`curl http://HOST:PORT/api -u user:password` was forwarded, its password sent in clear. The
proxy's `next_layer` hook runs before mitmproxy's (script addons come first in the chain) and
decides the first layer of every connection to its listener itself: TLS, then HTTP, when the
first byte is a TLS handshake record's (0x16; the TLS layer reads the rest, however it arrives);
otherwise a layer that refuses. Like Go's net/http server (kube-apiserver's), it answers what
looks like an HTTP request (`tlsRecordHeaderLooksLikeHTTP`) with a fixed 400 and closes; any
other bytes are closed without an answer. The client's bytes are never logged.
"""

from __future__ import annotations

import enum
import logging

from mitmproxy.proxy import commands, events, layer, layers
from mitmproxy.proxy.context import Context
from mitmproxy.proxy.layers.http import HTTPMode
from mitmproxy.proxy.mode_specs import ProxyMode

logger = logging.getLogger("kube_front_proxy")

TLS_HANDSHAKE_RECORD = 0x16
# Go: net/http server.go, tlsRecordHeaderLooksLikeHTTP and the answer written after it.
_HTTP_STARTS = (b"GET /", b"HEAD ", b"POST ", b"PUT /", b"OPTIO")
HTTP_ON_TLS_PORT = (
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
)


class Verdict(enum.Enum):
    TLS = "tls"
    HTTP = "http"  # plain HTTP: answered with Go's 400, then closed
    PLAIN = "plain"  # anything else: closed


def classify(first_bytes: bytes) -> Verdict:
    """What a connection's first bytes (at least one) are, for a TLS-only listener."""
    if first_bytes[:1] == bytes([TLS_HANDSHAKE_RECORD]):
        return Verdict.TLS
    if first_bytes[:5] in _HTTP_STARTS:
        return Verdict.HTTP
    return Verdict.PLAIN


class _Refused(layer.Layer):
    """Sends a fixed answer (maybe none) and closes the client connection; reads nothing."""

    def __init__(self, context: Context, answer: bytes) -> None:
        super().__init__(context)
        self._answer = answer
        self._closed = False

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        if self._closed:
            return
        self._closed = True
        if self._answer:
            yield commands.SendData(self.context.client, self._answer)
        yield commands.CloseConnection(self.context.client)


def first_layer(nextlayer: layer.NextLayer, listener: ProxyMode | None) -> None:
    """Choose the first layer of a connection to the proxy's listener (next_layer hook)."""
    context = nextlayer.context
    if context.client.proxy_mode != listener or len(context.layers) != 1:
        return  # another listener (refused at client_connected), or not the first decision
    if not isinstance(context.layers[0], layers.modes.ReverseProxy):
        return
    verdict = classify(nextlayer.data_client())  # type: ignore[no-untyped-call]
    if verdict is Verdict.TLS:
        # mitmproxy's https reverse stack, whatever the first bytes' length: TLS to the API
        # server, TLS with the client, HTTP inside.
        server_tls = layers.ServerTLSLayer(context)
        client_tls = server_tls.child_layer = layers.ClientTLSLayer(context)
        client_tls.child_layer = layers.HttpLayer(context, HTTPMode.transparent)
        nextlayer.layer = server_tls
        return
    logger.info(
        "kube-front-proxy: refused a connection that does not start with TLS from %s:%s",
        *context.client.peername[:2],
    )
    nextlayer.layer = _Refused(context, HTTP_ON_TLS_PORT if verdict is Verdict.HTTP else b"")
