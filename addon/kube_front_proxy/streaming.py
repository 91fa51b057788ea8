"""Which responses must be passed on as they arrive instead of buffered whole.

mitmproxy buffers a response body until it is complete. A watch (`?watch=true`) or a followed
log (`/log?follow=true`) never completes, so buffering it hangs `kubectl get -w` and
`kubectl logs -f`. Streaming costs mitmproxy throughput (about 15% when done for every
response), so only what needs it is streamed: watches, follows, and bodies of unknown length
(chunked), which is how the API server sends anything long.
"""

from __future__ import annotations

from mitmproxy import http

_TRUE = ("true", "1")


def must_stream(request: http.Request, response: http.Response) -> bool:
    query = request.query
    if query.get("watch", "").lower() in _TRUE or query.get("follow", "").lower() in _TRUE:
        return True
    return "content-length" not in response.headers
