"""A response body's Content-Encoding undone without ever producing more than a bound.

mitmproxy's `Message.get_content()` decodes a whole body at once: 0.2 MB of gzip came out as
200 MiB on the proxy's only event loop. zlib's `max_length` stops here at the bound instead, so
the work and the memory are the bound's. Only the codings kube-apiserver writes are decoded:
gzip (its APIResponseCompression), and deflate (zlib, or raw as some servers send it); any other
coding, a stream cut short or followed by more data, or a body over the bound gives None.
"""

from __future__ import annotations

import zlib

_WBITS = {"gzip": 31, "x-gzip": 31, "deflate": 15}
_RAW_DEFLATE = -15


def decoded_prefix(raw: bytes, coding: str, size: int) -> bytes | None:
    """At most the first `size` bytes of the decoded body."""
    decoded = _decode(raw, coding, size)
    return None if decoded is None else decoded[0][:size]


def decoded_body(raw: bytes, coding: str, limit: int) -> bytes | None:
    """The whole decoded body, if it is complete and at most `limit` bytes long."""
    decoded = _decode(raw, coding, limit + 1)
    if decoded is None:
        return None
    body, complete = decoded
    return body if complete and len(body) <= limit else None


def _decode(raw: bytes, coding: str, most: int) -> tuple[bytes, bool] | None:
    """Up to `most` decoded bytes, and whether that is the whole body with nothing after it."""
    coding = coding.strip().lower()
    if coding in ("", "identity"):
        return raw[:most], len(raw) <= most
    wbits = _WBITS.get(coding)
    if wbits is None:
        return None
    for bits in (wbits, _RAW_DEFLATE) if coding == "deflate" else (wbits,):
        decoder = zlib.decompressobj(bits)
        try:
            out = decoder.decompress(raw, most)
        except zlib.error:
            continue
        complete = decoder.eof and not decoder.unused_data and not decoder.unconsumed_tail
        return out, complete
    return None
