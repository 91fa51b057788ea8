from __future__ import annotations

import base64

import pytest

from kube_front_proxy.basic_auth import Credentials, MalformedCredentials, parse_basic


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
