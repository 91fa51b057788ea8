"""HTTP/1.1 chunked trailers are read and dropped instead of crashing the connection.

mitmproxy 12's HTTP/1 reader raises `NotImplementedError("HTTP trailers are not implemented
yet.")` when a chunked body ends with trailer fields (`Http1Connection.read_body`): the
connection's handler dies ("mitmproxy has crashed!"), the client gets no answer and waits,
and the request never reaches a hook. Before raising, h11 has parsed the trailer lines, and
its error for a malformed one quotes the line (a credential in it) into the flow's error and
the log. No hook runs while a body is read, so the body reader mitmproxy makes for a chunked
message is swapped for one that consumes the trailer section (up to its blank line, the same
framing h11 uses) without parsing it, and ends the message as if it had none.

kube-apiserver never reads request trailers, so nothing is lost; HTTP/2 trailers are dropped in
the addon's `request` hook (authn/take_credentials.py). Responses read from an HTTP/1.1 API server
get the same reader: their trailers are dropped too rather than crashing the connection.
"""

from __future__ import annotations

from collections.abc import Callable

import h11
from h11._readers import ChunkedReader
from h11._receivebuffer import ReceiveBuffer
from mitmproxy.proxy.layers.http import _http1

from kube_front_proxy.seam import original, pin, replace

_MakeReader = Callable[[int | None], _http1.TBodyReader]


class TrailerDroppingChunkedReader(ChunkedReader):
    """h11's chunked body reader, except that the trailer section is skipped unparsed."""

    def __call__(self, buf: ReceiveBuffer) -> h11.Data | h11.EndOfMessage | None:
        if self._reading_trailer:
            if buf.maybe_extract_lines() is None:
                return None  # the blank line has not arrived yet
            return h11.EndOfMessage()
        return super().__call__(buf)


def install() -> None:
    """Idempotent."""
    pin(
        ChunkedReader,
        "__call__",
        fingerprint="094548e69aee966a",
        why="TrailerDroppingChunkedReader relies on _reading_trailer being set, and __call__ "
        "called again, once the last chunk is read",
    )
    make_body_reader: _MakeReader = original(_http1, "make_body_reader")

    def trailer_dropping_body_reader(expected_size: int | None) -> _http1.TBodyReader:
        if expected_size is None:
            return TrailerDroppingChunkedReader()
        return make_body_reader(expected_size)

    replace(
        _http1,
        "make_body_reader",
        trailer_dropping_body_reader,
        fingerprint="9b076acda459637b",
        why="a chunked body's trailers are dropped, not a crash of the connection",
    )
