"""Request heads the API server's HTTP stack would refuse are refused here, before anything is
forwarded; absolute-form targets are sent on in origin-form.

Go's net/http (kube-apiserver) answers 400 to a method that is not a token, to a request target
with a control character (`url.ParseRequestURI`: any byte below 0x20, and DEL) and to a header
value with one (`httpguts.ValidHeaderFieldValue`: the same, HTAB excepted). mitmproxy passes
them on: a bare CR or a NUL inside a value, an obs-folded line (kept as CR LF SP inside the
value), ESC sequences in a User-Agent or a path. A backend that reads a bare CR as a line end
would see a header the proxy never vetted, and escapes reach whoever reads the logs. So the
proxy refuses them itself, with a 400 Status, over HTTP/1.1 and HTTP/2 alike. (HTTP/2 forbids
CR, LF and NUL in a field outright; the h2 stack refuses those before any hook runs.)

Go accepts an absolute-form target (`GET https://host:port/path HTTP/1.1`) and routes on its
path; so does the proxy, but the API server gets it in origin-form with the proxy's own Host:
nothing of the client's authority or scheme goes upstream. Over HTTP/2 the `:path` must be
origin-form (RFC 9113 8.3.1); anything else (`*`, an absolute URI) is a 400.

A request body may be sent with one transfer coding only, `chunked`: Go answers any other
(`gzip, chunked`) with a 501 "unsupported transfer encoding"; the proxy answers 400 before the
body is read, bad input being a 4xx here.
"""

from __future__ import annotations

import re

from mitmproxy import http

_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_TARGET_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

BAD_METHOD = "the request method is not a valid token"
BAD_TARGET = "the request target must be a path (origin-form) without control characters"
BAD_HEADER_VALUE = "a request header value contains a control character or a line break"
BAD_TRANSFER_ENCODING = "the only transfer coding accepted for a request body is chunked"


def malformed_head(request: http.Request) -> str | None:
    """Why the API server's HTTP stack would refuse this request head, or None."""
    data = request.data
    if not _TOKEN.fullmatch(data.method):
        return BAD_METHOD
    if not data.path.startswith(b"/") or _TARGET_CONTROL.search(data.path):
        return BAD_TARGET
    if any(_CONTROL.search(value) for _, value in data.headers.fields):
        return BAD_HEADER_VALUE
    codings = request.headers.get_all("transfer-encoding")
    if codings and [c.strip(" \t").lower() for c in codings] != ["chunked"]:
        return BAD_TRANSFER_ENCODING
    return None


def to_origin_form(request: http.Request) -> None:
    """An HTTP/1 absolute-form target goes upstream as a path; its authority and scheme are the
    client's and mean nothing here (the router sets the server and the Host header)."""
    if not request.is_http2 and not request.is_http3 and request.data.authority:
        request.data.authority = b""
    request.data.scheme = b"https"
