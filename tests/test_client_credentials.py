"""Taking every credential out of a request, and withholding quoted client bytes."""

from __future__ import annotations

import logging

from mitmproxy.test import tutils

from kube_front_proxy.authn.credentials import WEBSOCKET_BEARER_PREFIX
from kube_front_proxy.authn.take_credentials import drop_trailers, take_credentials
from kube_front_proxy.observe.quoted_bytes import WithholdQuotedBytes, withhold_bytes

TOKEN = WEBSOCKET_BEARER_PREFIX + "c2VjcmV0"


def test_every_credential_header_is_taken_whatever_its_case_or_spacing() -> None:
    request = tutils.treq()
    request.headers.fields = (
        (b"Accept", b"*/*"),
        (b"aUtHoRiZaTiOn", b"Basic one"),
        (b"Authorization ", b"Basic two"),
        (b"PROXY-AUTHORIZATION", b"Basic three"),
        (b"Cookie", b"kept"),
    )
    sent = take_credentials(request)
    assert sent.authorization == ("Basic one", "Basic two")
    assert request.headers.fields == ((b"Accept", b"*/*"), (b"Cookie", b"kept"))
    assert "Basic" not in repr(sent)


def test_a_request_without_credentials_is_left_as_it_is() -> None:
    request = tutils.treq()
    fields = ((b"Sec-WebSocket-Protocol", b"v5.channel.k8s.io"), (b"Accept", b"*/*"))
    request.headers.fields = fields
    assert take_credentials(request).authorization == ()
    assert request.headers.fields == fields


def test_websocket_bearer_subprotocols_are_taken_from_every_offer() -> None:
    request = tutils.treq()
    request.headers.fields = (
        (b"Connection", b"keep-alive, Upgrade"),
        (b"Upgrade", b"websocket"),
        (b"Sec-WebSocket-Protocol", b" " + TOKEN.encode() + b" ,v5.channel.k8s.io"),
        (b"sec-websocket-protocol", TOKEN.encode() + b"x"),
        (b"Sec-WebSocket-Protocol", b"v4.channel.k8s.io"),
    )
    sent = take_credentials(request)
    assert sent.websocket is not None
    assert sent.websocket.bearer == (TOKEN, TOKEN + "x") and sent.websocket.others == 2
    assert request.headers.fields[2:] == (
        (b"Sec-WebSocket-Protocol", b"v5.channel.k8s.io"),
        (b"Sec-WebSocket-Protocol", b"v4.channel.k8s.io"),
    )


def test_a_bearer_subprotocol_of_a_plain_request_is_removed_but_no_login() -> None:
    request = tutils.treq()
    request.headers.fields = ((b"Sec-WebSocket-Protocol", TOKEN.encode()),)
    assert take_credentials(request).websocket is None
    assert request.headers.fields == ()


def test_trailers_are_dropped() -> None:
    request = tutils.treq()
    request.trailers = tutils.treq().headers
    drop_trailers(request)
    assert request.trailers is None


def test_quoted_bytes_are_withheld_with_their_length() -> None:
    line = b"Authorization Basic c2VjcmV0'\"\\\xff"
    assert withhold_bytes(f"Invalid header line: {line!r}") == (
        f"Invalid header line: b'<{len(line)} bytes withheld>'"
    )
    assert withhold_bytes("cut: b'Authorization: Basic c2Vj") == "cut: b'<bytes withheld>'"
    assert withhold_bytes("verb'x' and b'' stay") == "verb'x' and b'<0 bytes withheld>' stay"


def test_the_log_filter_withholds_bytes_in_messages_and_tracebacks() -> None:
    try:
        raise ValueError(f"Invalid header line: {b'Authorization Basic c2VjcmV0'!r}")
    except ValueError as e:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "crashed: %s", (e,), None)
        record.exc_info = (type(e), e, e.__traceback__)
    assert WithholdQuotedBytes().filter(record)
    text = logging.Formatter().format(record)
    assert "c2VjcmV0" not in text and "bytes withheld" in text and "ValueError" in text
