"""A small, strict HTTP/1.1 request parser and response writer.

Hand-written instead of `http.server` so that the header list is kept exactly as it arrived (order,
name case, duplicates) and so that malformed requests get Go `net/http` server answers
(`net/http/server.go` `(*conn).serve`: a plain-text `400 Bad Request` and the connection closed).

Header values are the field values with surrounding spaces and tabs removed (as every HTTP parser,
Go's included, stores them); bytes are decoded as UTF-8 with `surrogateescape`, so non-UTF-8 bytes
survive round trips.
"""

from __future__ import annotations

import email.utils
import http
import re
from collections.abc import Sequence
from typing import BinaryIO

from .api import Request
from .requestheader import Header

MAX_HEADER_BYTES = (1 << 20) + 4096  # Go: DefaultMaxHeaderBytes plus its 4096 slack
MAX_BODY_BYTES = 16 << 20
CHUNKING_THRESHOLD = 2048  # Go's bufferBeforeChunkingSize

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE_BYTE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_REQUEST_LINE = re.compile(rb"([^ ]+) ([^ ]+) (HTTP/\d\.\d)")


class BadRequest(Exception):
    """A request Go's server refuses before any handler runs.

    `public` reasons are Go's `badRequestError`s, which it appends to the body
    (`400 Bad Request: missing required Host header`); parse errors from net/textproto and the
    like are not, and the body is just `400 Bad Request`.
    """

    def __init__(self, reason: str = "", *, code: int = 400, public: bool = False) -> None:
        super().__init__(reason)
        self.code = code
        self.public = public


class ClientGone(Exception):
    """The connection ended in the middle of a request."""


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _readline(reader: BinaryIO, budget: list[int]) -> bytes:
    line = reader.readline(budget[0] + 1)
    if len(line) > budget[0]:
        raise BadRequest("request header too large", code=431)
    budget[0] -= len(line)
    return line


def read_request(reader: BinaryIO) -> Request | None:
    """Read one request; None on a clean end of stream between requests."""
    budget = [MAX_HEADER_BYTES]
    line = _readline(reader, budget)
    # RFC 9112 2.2: ignore empty lines before the request line.
    while line in (b"\r\n", b"\n"):
        line = _readline(reader, budget)
    if not line:
        return None
    if not line.endswith(b"\n"):
        raise ClientGone()
    match = _REQUEST_LINE.fullmatch(line.rstrip(b"\r\n"))
    if match is None:
        raise BadRequest("malformed HTTP request " + repr(_decode(line.rstrip(b"\r\n"))))
    method, target, version = match.groups()
    if not _TOKEN.fullmatch(method):
        raise BadRequest("invalid method")
    if version not in (b"HTTP/1.0", b"HTTP/1.1"):
        raise BadRequest("malformed HTTP version " + repr(_decode(version)))

    headers: list[Header] = []
    while True:
        line = _readline(reader, budget)
        if not line:
            raise ClientGone()
        if line in (b"\r\n", b"\n"):
            break
        raw = line.rstrip(b"\r\n")
        if raw[:1] in (b" ", b"\t"):
            # obs-fold; Go's textproto would join the lines, RFC 9112 allows rejecting instead.
            raise BadRequest("malformed MIME header line: " + _decode(raw))
        name, sep, value = raw.partition(b":")
        if not sep:
            raise BadRequest("malformed MIME header line: " + _decode(raw))
        if not _TOKEN.fullmatch(name):
            raise BadRequest("invalid header name")
        value = value.strip(b" \t")
        if _BAD_VALUE_BYTE.search(value):
            raise BadRequest("invalid header value")
        headers.append((_decode(name), _decode(value)))

    req = Request(
        method=_decode(method),
        target=_decode(target),
        http_version=_decode(version),
        headers=headers,
    )
    hosts = [v for n, v in headers if n.lower() == "host"]
    if req.http_version == "HTTP/1.1" and not hosts:
        raise BadRequest("missing required Host header", public=True)
    if len(hosts) > 1:
        raise BadRequest("too many Host headers", public=True)
    return req


def read_body(reader: BinaryIO, req: Request) -> bytes:
    """The request body, from Content-Length or chunked transfer coding; a chunked body's
    trailer fields go to `req.trailers` (Go's Request.Trailer, which no handler reads)."""
    encodings = [v for n, v in req.headers if n.lower() == "transfer-encoding"]
    lengths = [v for n, v in req.headers if n.lower() == "content-length"]
    if encodings:
        # Go (net/http transfer.go) lets chunked win and ignores any Content-Length.
        if [e.lower() for e in encodings] != ["chunked"]:
            raise BadRequest("unsupported transfer encoding", code=501)
        return _read_chunked(reader, req.trailers)
    if not lengths:
        return b""
    if len(set(lengths)) != 1 or not lengths[0].isdigit():
        raise BadRequest("bad Content-Length")
    length = int(lengths[0])
    if length > MAX_BODY_BYTES:
        raise BadRequest("request body too large", code=413)
    body = reader.read(length)
    if len(body) != length:
        raise ClientGone()
    return body


def _read_chunked(reader: BinaryIO, trailers: list[Header]) -> bytes:
    body = bytearray()
    while True:
        line = reader.readline(1024)
        if not line.endswith(b"\n"):
            raise ClientGone() if not line or len(line) < 1024 else BadRequest("bad chunk size")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError as e:
            raise BadRequest("invalid byte in chunk length") from e
        if size == 0:
            while True:
                trailer = reader.readline(MAX_HEADER_BYTES)
                if not trailer:
                    raise ClientGone()
                if trailer in (b"\r\n", b"\n"):
                    return bytes(body)
                name, _, value = trailer.rstrip(b"\r\n").partition(b":")
                trailers.append((_decode(name), _decode(value.strip(b" \t"))))
        if len(body) + size > MAX_BODY_BYTES:
            raise BadRequest("request body too large", code=413)
        chunk = reader.read(size)
        if len(chunk) != size:
            raise ClientGone()
        body += chunk
        if reader.readline(3) not in (b"\r\n", b"\n"):
            raise BadRequest("malformed chunked encoding")


def wants_keep_alive(req: Request) -> bool:
    tokens = {
        t.strip().lower() for n, v in req.headers if n.lower() == "connection" for t in v.split(",")
    }
    if req.http_version == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


def http_date() -> str:
    return email.utils.formatdate(usegmt=True)


def status_line(code: int) -> bytes:
    try:
        phrase = http.HTTPStatus(code).phrase
    except ValueError:
        phrase = f"status code {code}"
    return f"HTTP/1.1 {code} {phrase}\r\n".encode("latin-1")


def response_head(
    code: int,
    headers: Sequence[Header],
    *,
    content_length: int | None,
    chunked: bool = False,
    close: bool,
) -> bytes:
    """Status line and headers in Go's order.

    Go writes the handler's headers sorted by name, then the ones it adds itself: Connection,
    Transfer-Encoding, Date, Content-Length (`net/http/server.go` `extraHeader`). With neither a
    length nor chunking the body ends when the connection closes (HTTP/1.0 streams).
    """
    out = [status_line(code)]
    for name, value in sorted(headers, key=lambda h: h[0]):
        out.append(f"{name}: {value}\r\n".encode("utf-8", "surrogateescape"))
    if close:
        out.append(b"Connection: close\r\n")
    if chunked:
        out.append(b"Transfer-Encoding: chunked\r\n")
    out.append(f"Date: {http_date()}\r\n".encode("latin-1"))
    if content_length is not None:
        out.append(f"Content-Length: {content_length}\r\n".encode("latin-1"))
    out.append(b"\r\n")
    return b"".join(out)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""


LAST_CHUNK = b"0\r\n\r\n"


def bad_request_response(err: BadRequest) -> bytes:
    """Go's canned answer to an unparseable request; the connection is closed after it."""
    phrase = http.HTTPStatus(err.code).phrase
    text = f"{err.code} {phrase}"
    if err.code == 501:
        text = "Unsupported transfer encoding"
    elif err.public:
        text += f": {err}"
    return (
        f"HTTP/1.1 {err.code} {phrase}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Connection: close\r\n\r\n"
        f"{text}"
    ).encode("utf-8", "surrogateescape")
