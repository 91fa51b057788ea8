"""The seal of a vouched request (identity/vouched.py): what counts as a change, what does not."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from mitmproxy import http
from mitmproxy.test import tflow

from kube_front_proxy.identity.vouched import Ledger


def vouched(**request: object) -> tuple[Ledger, http.HTTPFlow]:
    flow = tflow.tflow()
    flow.request.headers["X-Remote-User"] = "alice"
    for name, value in request.items():
        setattr(flow.request, name, value)
    ledger = Ledger()
    ledger.vouch(flow)
    return ledger, flow


CHANGES: dict[str, tuple[Callable[[http.Request], None], str]] = {
    "user": (lambda r: r.headers.__setitem__("X-Remote-User", "admin"), "its headers"),
    "group": (lambda r: r.headers.add("x-remote-group", "system:masters"), "its headers"),
    "order": (lambda r: setattr(r.headers, "fields", r.headers.fields[::-1]), "its headers"),
    "method": (lambda r: setattr(r, "method", "DELETE"), "its method"),
    "path": (lambda r: setattr(r, "path", "/api/v1/secrets"), "its path"),
    "version": (lambda r: setattr(r, "http_version", "HTTP/1.0"), "its http_version"),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_change_of_the_head_is_seen(change: str) -> None:
    ledger, flow = vouched()
    edit, expected = CHANGES[change]
    edit(flow.request)
    assert ledger.changed(flow) == expected


def test_an_untouched_request_and_its_destination_are_fine() -> None:
    ledger, flow = vouched()
    flow.request.host, flow.request.port = "10.0.0.2", 6443  # the router's choice
    flow.request.host_header = "10.0.0.2:6443"
    assert ledger.changed(flow) == ""


def test_expect_is_not_sealed() -> None:
    ledger, flow = vouched()
    flow.request.headers["Expect"] = "100-continue"
    ledger.vouch(flow)
    flow.request.headers.pop("expect")  # as mitmproxy does after its 100 Continue
    assert ledger.changed(flow) == ""


def test_the_body_is_sealed_once_read_unless_streamed() -> None:
    ledger, flow = vouched()
    flow.request.data.content = b'{"kind":"Pod"}'  # as mitmproxy sets it once read
    ledger.body_read(flow)
    assert ledger.changed(flow) == ""
    flow.request.data.content = b'{"kind":"Pod", "spec": {}}'
    assert ledger.changed(flow) == "its body"
    streamed_ledger, streamed = vouched(stream=True)
    streamed_ledger.body_read(streamed)
    streamed.request.data.content = b"what store_streamed_bodies kept"
    assert streamed_ledger.changed(streamed) == ""


def test_a_request_never_vouched_for_is_changed() -> None:
    assert Ledger().changed(tflow.tflow()) == "the request was never vouched for"
