"""Which responses must be passed on as they arrive instead of buffered whole.

mitmproxy buffers a response body until it is complete. A watch (`?watch=true`) or a followed
log (`/log?follow=true`) never completes, so buffering it hangs `kubectl get -w` and
`kubectl logs -f`. The API server sends those, and every other long body, without a
Content-Length (chunked on HTTP/1.1, open-ended DATA frames on HTTP/2): that is the one cheap
test needed. Streaming everything would cost mitmproxy about 15% of its throughput.
"""

from __future__ import annotations

from mitmproxy import http


def must_stream(response: http.Response) -> bool:
    return "content-length" not in response.headers
