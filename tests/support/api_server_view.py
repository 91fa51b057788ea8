"""What kube-apiserver makes of the identity header lines the proxy wrote: the emulator's port of
its requestheader authenticator, with the proxy's default header names."""

from __future__ import annotations

from typing import Any

from kube_front_proxy.identity.headers import HeaderNames
from tests.emulator.requestheader import RequestHeaderAuthenticator

NAMES = HeaderNames()


def parsed(lines: list[tuple[bytes, bytes]]) -> Any:
    authenticator = RequestHeaderAuthenticator.new(
        NAMES.username, NAMES.uid, NAMES.group, NAMES.extra_prefixes
    )
    return authenticator.authenticate([(n.decode("utf-8"), v.decode("utf-8")) for n, v in lines])
