"""The identity-header writer: what the API server receives, header line by header line."""

from __future__ import annotations

import pytest
from mitmproxy.http import Headers

from kube_front_proxy.identity.headers import (
    HeaderNames,
    Identity,
    IdentityHeaderWriter,
    escape_extra_key,
    is_token,
)

ALICE = Identity(
    user="alice",
    groups=("developers", "a,b"),
    uid="1001",
    extra={"scopes": ("view", "edit"), "acme.com/project": ("payments",)},
)


def rewrite(headers: list[tuple[bytes, bytes]], names: HeaderNames | None = None) -> list:
    writer = IdentityHeaderWriter(names or HeaderNames())
    h = Headers(headers)
    writer.apply(h, writer.lines_for(ALICE))
    return list(h.fields)


def test_lines_follow_client_go_set_auth_proxy_headers() -> None:
    assert rewrite([(b"Accept", b"*/*")]) == [
        (b"Accept", b"*/*"),
        (b"X-Remote-User", b"alice"),
        (b"X-Remote-Uid", b"1001"),
        (b"X-Remote-Group", b"developers"),
        (b"X-Remote-Group", b"a,b"),  # a comma stays inside one group
        (b"X-Remote-Extra-scopes", b"view"),
        (b"X-Remote-Extra-scopes", b"edit"),
        (b"X-Remote-Extra-acme.com%2Fproject", b"payments"),
    ]


@pytest.mark.parametrize(
    "spoofed",
    [
        b"X-Remote-User",
        b"x-remote-user",
        b"X-REMOTE-USER",
        b"x-ReMoTe-GrOuP",
        b"X-Remote-Uid",
        b"x-remote-extra-scopes",
        b"X-REMOTE-EXTRA-anything",
        b"X-Remote-Extra-",
        b"authorization",
        b"AUTHORIZATION",
    ],
)
def test_client_identity_headers_are_stripped_in_any_case(spoofed: bytes) -> None:
    out = rewrite([(spoofed, b"admin"), (b"Accept", b"*/*")])
    assert (spoofed, b"admin") not in out
    assert all(value != b"admin" for _, value in out)


def test_custom_header_names_are_stripped_and_used() -> None:
    names = HeaderNames(
        username=("X-Auth-User", "X-Other-User"),
        group=("X-Auth-Groups",),
        extra_prefixes=("X-Auth-Extra-", "X-More-"),
        uid=(),
    )
    out = rewrite(
        [
            (b"x-other-user", b"admin"),
            (b"X-AUTH-USER", b"admin"),
            (b"x-auth-groups", b"system:masters"),
            (b"x-more-scopes", b"all"),
            # Not configured here, but kube-apiserver's defaults: stripped all the same.
            (b"X-Remote-User", b"someone"),
            (b"x-remote-uid", b"0"),
            (b"X-Remote-Extra-Scopes", b"all"),
        ],
        names,
    )
    assert out == [
        (b"X-Auth-User", b"alice"),
        (b"X-Auth-Groups", b"developers"),
        (b"X-Auth-Groups", b"a,b"),
        (b"X-Auth-Extra-scopes", b"view"),
        (b"X-Auth-Extra-scopes", b"edit"),
        (b"X-Auth-Extra-acme.com%2Fproject", b"payments"),
    ]


@pytest.mark.parametrize(
    ("key", "escaped"),
    [
        # requestheader_test.go "escaped extra keys" expects example.com/percent%20encoded.
        ("example.com/percent%20encoded", "example.com%2Fpercent%2520encoded"),
        ("scopes", "scopes"),
        ("a b", "a%20b"),
        ("今日", "%E4%BB%8A%E6%97%A5"),
        ("Upper", "%55pper"),
    ],
)
def test_escape_extra_key(key: str, escaped: str) -> None:
    assert escape_extra_key(key) == escaped
    assert is_token(escaped)


def test_is_token() -> None:
    assert is_token("X-Remote-User")
    assert not is_token("X Remote")
    assert not is_token("")
    assert not is_token("X-Remote-User:")


def test_names_the_api_server_reads_are_stripped_once_known() -> None:
    writer = IdentityHeaderWriter(HeaderNames())
    assert not writer.is_identity_header(b"X-Group-2")
    writer.strip_also(HeaderNames(("X-User-2",), ("x-group-2",), ("X-Acme-",), ("X-Uid-2",)))
    for name in (b"x-user-2", b"X-GROUP-2", b"X-Acme-scopes", b"x-uid-2", b"X-Remote-User"):
        assert writer.is_identity_header(name), name
    assert not writer.is_identity_header(b"X-Acme")
