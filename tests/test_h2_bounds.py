"""HTTP/2 bounds without a proxy: the frame meter, deferred acknowledgement, the settings.

The attacks through the real proxy are in tests/attacks/test_h2_continuation.py and
tests/attacks/test_h2_slow_read.py.
"""

from __future__ import annotations

from pathlib import Path

import h2.config
import h2.connection
import h2.events
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import ContinuationFrame, DataFrame, Frame, HeadersFrame

from kube_front_proxy import seam
from kube_front_proxy.client.h2_frames import PREFACE, FrameMeter
from kube_front_proxy.config.errors import ConfigError
from kube_front_proxy.config.settings import load_settings
from kube_front_proxy.seam.h2_flow_control import UpstreamH2Connection, must_pause
from tests.support.configs import proxy_config, write_yaml

KIB = 1024


def frame(f: Frame, size: int, *flags: str) -> bytes:
    f.data = b"\0" * size
    for flag in flags:
        f.flags.add(flag)
    return bytes(f.serialize())


def test_a_frame_over_the_limit_is_refused_at_its_header() -> None:
    meter = FrameMeter(16 * KIB, 64 * KIB)
    header = frame(DataFrame(1), 16 * KIB + 1)[:9]
    assert meter.feed(PREFACE) is None
    # Byte by byte: the ninth byte of the header decides, before any payload.
    assert all(meter.feed(header[i : i + 1]) is None for i in range(8))
    refusal = meter.feed(header[8:])
    assert refusal and refusal.error_code == ErrorCodes.FRAME_SIZE_ERROR


def test_an_open_header_block_is_refused_as_it_passes_the_limit() -> None:
    meter = FrameMeter(16 * KIB, 8 * KIB)
    assert meter.feed(PREFACE + frame(HeadersFrame(1), 4 * KIB)) is None
    assert meter.feed(frame(ContinuationFrame(1), 4 * KIB)) is None  # 8 KiB: at the limit
    refusal = meter.feed(frame(ContinuationFrame(1), 1))
    assert refusal and refusal.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert refusal.message == "HTTP/2 header block over 8192 bytes before its end"


def test_a_block_that_ends_as_it_passes_the_limit_goes_on() -> None:
    meter = FrameMeter(16 * KIB, 8 * KIB)
    stream = (
        PREFACE
        + frame(HeadersFrame(1), 6 * KIB)
        + frame(ContinuationFrame(1), 6 * KIB, "END_HEADERS")
        # The next block starts from nothing, and DATA is no header block.
        + frame(HeadersFrame(3), 7 * KIB, "END_HEADERS")
        + frame(DataFrame(3), 16 * KIB)
        + frame(DataFrame(3), 16 * KIB)
    )
    # In pieces that cut through headers and payloads.
    assert all(meter.feed(stream[i : i + 1000]) is None for i in range(0, len(stream), 1000))


def test_the_upstream_is_acknowledged_only_what_the_client_was_handed() -> None:
    upstream = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    proxy = UpstreamH2Connection(h2.config.H2Configuration(client_side=True), 64 * KIB, 256 * KIB)
    upstream.initiate_connection()
    proxy.initiate_connection()
    proxy.send_headers(1, [(":method", "GET"), (":scheme", "https"), (":path", "/"),
                           (":authority", "k")], end_stream=True)  # fmt: skip
    upstream.receive_data(proxy.data_to_send())
    proxy.receive_data(upstream.data_to_send())
    upstream.receive_data(proxy.data_to_send())
    assert upstream.local_flow_control_window(1) == 64 * KIB
    assert upstream.max_outbound_frame_size == 2**17

    upstream.send_headers(1, [(":status", "200")])
    upstream.send_data(1, b"x" * 40 * KIB)
    received = proxy.receive_data(upstream.data_to_send())
    for event in received:
        if isinstance(event, h2.events.DataReceived):
            # What mitmproxy does once it has passed the data on.
            proxy.acknowledge_received_data(event.flow_controlled_length, 1)
    assert not proxy.data_to_send()

    proxy.acknowledge_handed_on(lambda stream_id: 40 * KIB)  # all still queued
    assert not proxy.data_to_send()
    proxy.acknowledge_handed_on(lambda stream_id: 8 * KIB)  # 32 KiB handed on: half the window
    upstream.receive_data(proxy.data_to_send())
    assert upstream.local_flow_control_window(1) == 56 * KIB
    assert proxy.unacknowledged == {1: 8 * KIB}


def test_an_http1_upstream_pauses_past_either_bound() -> None:
    policy = seam.Policy(http2_stream_buffer_bytes=1024, http2_connection_buffer_bytes=4096)
    assert not must_pause(1024, 4096, policy)
    assert must_pause(1025, 1025, policy)
    assert must_pause(0, 4097, policy)


def test_buffer_settings(tmp_path: Path, pki: Path) -> None:
    def settings(**limits: int) -> tuple[int, int]:
        path = write_yaml(tmp_path / "config.yaml", proxy_config(pki, 6443, 8443, limits=limits))
        s = load_settings(path)
        return s.http2_stream_buffer_bytes, s.http2_connection_buffer_bytes

    assert settings() == (1024 * KIB, 8192 * KIB)
    assert settings(http2_stream_buffer_kb=64, http2_connection_buffer_kb=64) == (64 * KIB,) * 2
    for limits, message in [
        ({"http2_stream_buffer_kb": 63}, "limits.http2_stream_buffer_kb: must be between 64"),
        ({"http2_connection_buffer_kb": 512}, "limits.http2_connection_buffer_kb: must be betw"),
        ({"http2_connection_buffer_kb": 2**21}, "limits.http2_connection_buffer_kb: must be betw"),
    ]:
        with pytest.raises(ConfigError, match=message):
            settings(**limits)
