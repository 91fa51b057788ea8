"""A client's HTTP/2 frames and header blocks are bounded as they arrive, before any login.

mitmproxy 12.3.1 sets up its HTTP/2 server side (`Http2Server`, `BufferedH2Connection.__init__`)
to advertise and accept 128 KiB frames, and hands every byte received to the h2 library, which
holds a frame until it is complete (checking its length only then: a frame header may announce
16 MiB) and a header block until its END_HEADERS, up to 64 frames. So one connection could make
the proxy hold about 8.5 MiB before the request head limit ran on the complete block (50
connections: RSS +420 MiB), without a login.

Corrected here, for client connections only (the upstream is the API server):

- the proxy advertises the protocol's default SETTINGS_MAX_FRAME_SIZE (16 KiB) and accepts no
  more, and SETTINGS_MAX_HEADER_LIST_SIZE = the request head limit (`seam.policy.
  max_request_head_bytes`; clients such as Go's refuse to send a larger head);
- `FrameMeter` (`client/h2_frames.py`) reads each frame header as it arrives: a frame over 16 KiB is
  refused at its header (GOAWAY FRAME_SIZE_ERROR), a header block still open past the request
  head limit as soon as it passes it (GOAWAY ENHANCE_YOUR_CALM); the connection is closed
  (lingering_close.py: the client still reads the GOAWAY while it sends on), as RFC 9113 10.5.1
  allows (a block cannot be skipped without decoding it). A complete block goes on to the h2
  stack and the request head limit (a 431 Status for that stream).

No public hook runs before a request's headers are complete: `requestheaders` sees a decoded
request, and the client's bytes reach addons only as messages.
"""

from __future__ import annotations

import h2.config
from mitmproxy.proxy import events
from mitmproxy.proxy.layer import CommandGenerator
from mitmproxy.proxy.layers.http._http2 import Http2Server
from mitmproxy.proxy.layers.http._http_h2 import BufferedH2Connection

from kube_front_proxy import seam
from kube_front_proxy.client.h2_frames import FrameMeter
from kube_front_proxy.seam import lingering_close

# The protocol's default and smallest SETTINGS_MAX_FRAME_SIZE (RFC 9113 6.5.2).
MAX_FRAME_SIZE = 2**14


class ClientH2Connection(BufferedH2Connection):
    """mitmproxy's HTTP/2 connection to a client, with small frames and a bounded header list."""

    def __init__(self, config: h2.config.H2Configuration, max_header_list: int) -> None:
        super().__init__(config)
        self.local_settings.max_frame_size = MAX_FRAME_SIZE
        self.local_settings.max_header_list_size = max_header_list
        # Acknowledged at once, so that the preface carries them (mitmproxy's "hyper-h2 pitfall").
        self.local_settings.acknowledge()
        self.max_inbound_frame_size = MAX_FRAME_SIZE
        # A complete block up to the limit is decoded, so that the limit answers it with a 431
        # Status (hpack's own limit would close the connection).
        self.decoder.max_header_list_size = max(self.decoder.max_header_list_size, max_header_list)
        self.meter = FrameMeter(MAX_FRAME_SIZE, max_header_list)


def _measured_handle_event(self: Http2Server, event: events.Event) -> CommandGenerator[None]:
    if isinstance(event, events.Start):
        self.h2_conn = ClientH2Connection(self.h2_conf, seam.policy.max_request_head_bytes)
    elif isinstance(event, events.DataReceived) and isinstance(self.h2_conn, ClientH2Connection):
        refusal = self.h2_conn.meter.feed(event.data)
        if refusal:
            lingering_close.after_final_answer(self.conn)
            yield from self.protocol_error(refusal.message, refusal.error_code)
            return
    yield from seam.original(Http2Server, "_handle_event")(self, event)


def install() -> None:
    """Measure every client's HTTP/2 frames, by the policy's request head limit; idempotent."""
    seam.replace(
        Http2Server,
        "_handle_event",
        _measured_handle_event,
        fingerprint="19ceb70611529321",
        why="client connections advertise 16 KiB frames and a header list limit, and their "
        "frames are measured before h2 buffers them",
    )
    seam.pin(
        BufferedH2Connection,
        "__init__",
        fingerprint="09a958d0c99672e3",
        why="ClientH2Connection changes the settings it advertises",
    )
    seam.pin(
        Http2Server,
        "protocol_error",
        fingerprint="735e08ff7d5aa690",
        why="sends GOAWAY with the given code and closes the connection",
    )
