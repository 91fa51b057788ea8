from __future__ import annotations

import base64

import pytest

from kube_front_proxy.authn.credentials import (
    WEBSOCKET_BEARER_PREFIX,
    BearerToken,
    Credentials,
    MalformedCredentials,
    WebSocketProtocols,
    parse_basic,
    parse_credentials,
    parse_websocket_bearer,
)


def basic(raw: bytes, scheme: str = "Basic") -> str:
    return f"{scheme} {base64.b64encode(raw).decode()}"


def test_parses_basic_credentials() -> None:
    assert parse_basic([basic(b"alice:pa:ss")]) == Credentials("alice", "pa:ss")
    assert parse_basic([basic("jörg:pässword".encode(), "basic")]) == Credentials(
        "jörg", "pässword"
    )
    assert parse_basic([basic(b"alice:")]) == Credentials("alice", "")
    assert parse_basic([]) is None


@pytest.mark.parametrize(
    "values",
    [
        [basic(b"alice")],  # no colon
        ["Basic !!!not-base64"],
        [basic(b"\xff\xfe:x")],  # not UTF-8
        ["Bearer abc"],
        [basic(b"a:b"), basic(b"c:d")],
        ["Basic"],
    ],
)
def test_malformed_credentials(values: list[str]) -> None:
    with pytest.raises(MalformedCredentials):
        parse_basic(values)


def test_password_never_in_repr_or_error() -> None:
    creds = parse_basic([basic(b"alice:hunter2")])
    assert "hunter2" not in repr(creds)
    with pytest.raises(MalformedCredentials) as e:
        parse_basic([basic(b"alice:hunter2"), basic(b"x:hunter2")])
    assert "hunter2" not in str(e.value)


def _ws(*bearer: str, others: int = 1) -> WebSocketProtocols:
    return WebSocketProtocols(bearer, others)


def test_websocket_bearer_subprotocol_as_kube_apiserver_reads_it() -> None:
    token = "tök.en-1"
    encoded = base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")
    assert parse_websocket_bearer(_ws(WEBSOCKET_BEARER_PREFIX + encoded)) == BearerToken(token)
    assert parse_websocket_bearer(_ws()) is None
    assert parse_websocket_bearer(_ws(WEBSOCKET_BEARER_PREFIX)) is None  # empty: no opinion
    assert parse_credentials([], _ws(WEBSOCKET_BEARER_PREFIX + encoded)) == BearerToken(token)
    assert parse_credentials([basic(b"a:b")], None) == Credentials("a", "b")


@pytest.mark.parametrize(
    ("protocols", "authorization"),
    [
        (_ws(WEBSOCKET_BEARER_PREFIX + "dA", WEBSOCKET_BEARER_PREFIX + "dA"), []),
        (_ws(WEBSOCKET_BEARER_PREFIX + "dA", others=0), []),
        (_ws(WEBSOCKET_BEARER_PREFIX + "dA=="), []),  # padded
        (_ws(WEBSOCKET_BEARER_PREFIX + "d+A/"), []),  # not the URL alphabet
        (_ws(WEBSOCKET_BEARER_PREFIX + "_w"), []),  # 0xff: not UTF-8
        (_ws(WEBSOCKET_BEARER_PREFIX + "dA"), [basic(b"a:b")]),
    ],
)
def test_malformed_websocket_bearer_subprotocols(
    protocols: WebSocketProtocols, authorization: list[str]
) -> None:
    with pytest.raises(MalformedCredentials) as e:
        parse_credentials(authorization, protocols)
    assert "dA" not in str(e.value)


def test_a_bare_token_is_never_quoted_as_a_scheme() -> None:
    with pytest.raises(MalformedCredentials) as e:
        parse_basic(["s3cr3t-token-without-scheme"])
    assert "s3cr3t" not in str(e.value) + e.value.detail
    with pytest.raises(MalformedCredentials) as e:
        parse_basic(["Digest username=x"])
    assert "Digest" in e.value.detail
