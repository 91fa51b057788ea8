"""HTTP/2 bounds without a proxy: the frame meter.

The attacks through the real proxy are in tests/attacks/test_h2_continuation.py.
"""

from __future__ import annotations

from h2.errors import ErrorCodes
from hyperframe.frame import ContinuationFrame, DataFrame, Frame, HeadersFrame

from kube_front_proxy.h2_frames import PREFACE, FrameMeter

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
