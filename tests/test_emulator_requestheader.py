"""The header authenticator against the Kubernetes test tables it must match.

Ported cases (same names, same inputs, same expectations):
- `k8s.io/apiserver pkg/authentication/request/headerrequest/requestheader_test.go`
  `TestRequestHeader` (every case in kubernetes/apiserver master);
- `k8s.io/apiserver pkg/endpoints/filters/authentication_test.go`
  `TestAuthenticateRequestClearHeaders` (the filter's cleanup after any successful authentication).

Go's `http.Header` maps become header lists: each key's values in order, keys in the order written
in the Go source (Go map order carries no meaning there).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest

from tests.emulator.authn import AuthenticationChain, AuthRequest, Outcome
from tests.emulator.requestheader import (
    EscapeError,
    Header,
    RequestHeaderAuthenticator,
    UserInfo,
    clear_authentication_headers,
    path_unescape,
    trim_headers,
)

GoHeader = Mapping[str, Sequence[str]]


def pairs(h: GoHeader | None) -> list[Header]:
    return [(name, value) for name, values in (h or {}).items() for value in values]


@dataclass(frozen=True)
class Case:
    name_headers: Sequence[str] = ()
    uid_headers: Sequence[str] = ()
    group_headers: Sequence[str] = ()
    extra_prefix_headers: Sequence[str] = ()
    request_headers: GoHeader = field(default_factory=dict)
    final_headers: GoHeader | None = None
    expected_user: UserInfo | None = None
    expected_ok: bool = False


def user(
    name: str,
    uid: str = "",
    groups: Sequence[str] = (),
    extra: Mapping[str, Sequence[str]] | None = None,
) -> UserInfo:
    return UserInfo(name, uid, tuple(groups), {k: tuple(v) for k, v in (extra or {}).items()})


EXTRA_HEADERS = {
    "X-Remote-extra-1-key1": ["alfa", "bravo"],
    "X-Remote-Extra-1-Key2": ["charlie", "delta"],
    "X-Remote-Extra-1-": ["india", "juliet"],
    "X-Remote-extra-2-": ["kilo", "lima"],
    "X-Remote-extra-2-Key1": ["echo", "foxtrot"],
    "X-Remote-Extra-2-key2": ["golf", "hotel"],
}
EXTRA_EXPECTED = {
    "key1": ["alfa", "bravo", "echo", "foxtrot"],
    "key2": ["charlie", "delta", "golf", "hotel"],
    "": ["india", "juliet", "kilo", "lima"],
}

TEST_REQUEST_HEADER: dict[str, Case] = {
    "empty": Case(),
    "user no match": Case(name_headers=["X-Remote-User"]),
    "user match": Case(
        name_headers=["X-Remote-User"],
        request_headers={"X-Remote-User": ["Bob"]},
        expected_user=user("Bob"),
        expected_ok=True,
    ),
    "user exact match": Case(
        name_headers=["X-Remote-User"],
        request_headers={
            "Prefixed-X-Remote-User-With-Suffix": ["Bob"],
            "X-Remote-User-With-Suffix": ["Bob"],
        },
    ),
    "user first match": Case(
        name_headers=["X-Remote-User", "A-Second-X-Remote-User", "Another-X-Remote-User"],
        request_headers={
            "X-Remote-User": ["", "First header, second value"],
            "A-Second-X-Remote-User": ["Second header, first value", "Second header, second value"],
            "Another-X-Remote-User": ["Third header, first value"],
        },
        expected_user=user("Second header, first value"),
        expected_ok=True,
    ),
    "user case-insensitive": Case(
        name_headers=["x-REMOTE-user"],
        request_headers={"X-Remote-User": ["Bob"]},
        expected_user=user("Bob"),
        expected_ok=True,
    ),
    "groups none": Case(
        name_headers=["X-Remote-User"],
        group_headers=["X-Remote-Group"],
        request_headers={"X-Remote-User": ["Bob"]},
        expected_user=user("Bob"),
        expected_ok=True,
    ),
    "groups all matches": Case(
        name_headers=["X-Remote-User"],
        group_headers=["X-Remote-Group-1", "X-Remote-Group-2"],
        request_headers={
            "X-Remote-User": ["Bob"],
            "X-Remote-Group-1": ["one-a", "one-b"],
            "X-Remote-Group-2": ["two-a", "two-b"],
        },
        expected_user=user("Bob", groups=["one-a", "one-b", "two-a", "two-b"]),
        expected_ok=True,
    ),
    "groups case-insensitive": Case(
        name_headers=["X-REMOTE-User"],
        group_headers=["X-REMOTE-Group"],
        request_headers={"X-Remote-User": ["Bob"], "X-Remote-Group": ["Users"]},
        expected_user=user("Bob", groups=["Users"]),
        expected_ok=True,
    ),
    "uid none": Case(
        name_headers=["X-Remote-User"],
        uid_headers=["X-Remote-Uid"],
        request_headers={"X-Remote-User": ["Bob"]},
        expected_user=user("Bob"),
        expected_ok=True,
    ),
    "uid exact match": Case(
        name_headers=["X-Remote-User"],
        uid_headers=["X-Remote-Uid"],
        request_headers={
            "X-Remote-User": ["Bob"],
            "X-Remote-Uid-1": ["8f5ea9d1-a5ed-4d02-80a2-26709216350b"],
            "X-Remote-Uid-2": ["c7644180-c774-4a9b-81e5-3eef76f087ab"],
        },
        final_headers={
            "X-Remote-Uid-1": ["8f5ea9d1-a5ed-4d02-80a2-26709216350b"],
            "X-Remote-Uid-2": ["c7644180-c774-4a9b-81e5-3eef76f087ab"],
        },
        expected_user=user("Bob"),
        expected_ok=True,
    ),
    "uid first match": Case(
        name_headers=["X-Remote-User"],
        uid_headers=["X-Remote-Uid-1", "X-Remote-Uid-2"],
        request_headers={
            "X-Remote-User": ["Bob"],
            "X-Remote-Uid-1": ["8f5ea9d1-a5ed-4d02-80a2-26709216350b"],
            "X-Remote-Uid-2": ["c7644180-c774-4a9b-81e5-3eef76f087ab"],
        },
        expected_user=user("Bob", uid="8f5ea9d1-a5ed-4d02-80a2-26709216350b"),
        expected_ok=True,
    ),
    "extra prefix matches case-insensitive": Case(
        name_headers=["X-Remote-User"],
        uid_headers=["X-Remote-UID"],
        group_headers=["X-Remote-Group-1", "X-Remote-Group-2"],
        extra_prefix_headers=["X-Remote-Extra-1-", "X-Remote-Extra-2-"],
        request_headers={
            "X-Remote-User": ["Bob"],
            "X-Remote-Uid": ["2ca80fb0-60ea-4ecf-951c-89af843b0402"],
            "X-Remote-Group-1": ["one-a", "one-b"],
            "X-Remote-Group-2": ["two-a", "two-b"],
            **EXTRA_HEADERS,
        },
        expected_user=user(
            "Bob",
            uid="2ca80fb0-60ea-4ecf-951c-89af843b0402",
            groups=["one-a", "one-b", "two-a", "two-b"],
            extra=EXTRA_EXPECTED,
        ),
        expected_ok=True,
    ),
    "extra prefix matches case-insensitive with unrelated headers": Case(
        name_headers=["X-Remote-User"],
        group_headers=["X-Remote-Group-1", "X-Remote-Group-2"],
        extra_prefix_headers=["X-Remote-Extra-1-", "X-Remote-Extra-2-"],
        request_headers={
            "X-Group-Remote": ["snorlax"],
            "X-Group-Bear": ["panda"],
            "X-Remote-User": ["Bob"],
            "X-Remote-Group-1": ["one-a", "one-b"],
            "X-Remote-Group-2": ["two-a", "two-b"],
            **EXTRA_HEADERS,
        },
        final_headers={"X-Group-Remote": ["snorlax"], "X-Group-Bear": ["panda"]},
        expected_user=user(
            "Bob", groups=["one-a", "one-b", "two-a", "two-b"], extra=EXTRA_EXPECTED
        ),
        expected_ok=True,
    ),
    "escaped extra keys": Case(
        name_headers=["X-Remote-User"],
        uid_headers=["X-Remote-Uid"],
        group_headers=["X-Remote-Group"],
        extra_prefix_headers=["X-Remote-Extra-"],
        request_headers={
            "X-Remote-User": ["Bob"],
            "X-Remote-Uid": ["2ca80fb0-60ea-4ecf-951c-89af843b0402"],
            "X-Remote-Group": ["one-a", "one-b"],
            "X-Remote-Extra-Alpha": ["alphabetical"],
            "X-Remote-Extra-Alph4num3r1c": ["alphanumeric"],
            "X-Remote-Extra-Percent%20encoded": ["percent encoded"],
            "X-Remote-Extra-Almost%zzpercent%xxencoded": ["not quite percent encoded"],
            "X-Remote-Extra-Example.com%2fpercent%2520encoded": [
                "url with double percent encoding"
            ],
            "X-Remote-Extra-Example.com%2F%E4%BB%8A%E6%97%A5%E3%81%AF": ["url with unicode"],
            "X-Remote-Extra-Abc123!#$+.-_*\\^`~|'": ["header key legal characters"],
        },
        expected_user=user(
            "Bob",
            uid="2ca80fb0-60ea-4ecf-951c-89af843b0402",
            groups=["one-a", "one-b"],
            extra={
                "alpha": ["alphabetical"],
                "alph4num3r1c": ["alphanumeric"],
                "percent encoded": ["percent encoded"],
                "almost%zzpercent%xxencoded": ["not quite percent encoded"],
                "example.com/percent%20encoded": ["url with double percent encoding"],
                "example.com/今日は": ["url with unicode"],
                "abc123!#$+.-_*\\^`~|'": ["header key legal characters"],
            },
        ),
        expected_ok=True,
    ),
}


@pytest.mark.parametrize("name", list(TEST_REQUEST_HEADER))
def test_request_header(name: str) -> None:
    case = TEST_REQUEST_HEADER[name]
    auth = RequestHeaderAuthenticator.new(
        case.name_headers, case.uid_headers, case.group_headers, case.extra_prefix_headers
    )
    got, remaining = auth.authenticate_and_clear(pairs(case.request_headers))
    assert (got is not None) == case.expected_ok
    if got is None:
        return
    assert got == case.expected_user
    # "requestheader clears headers": what is left after a successful authentication.
    assert remaining == pairs(case.final_headers)


# --- TestAuthenticateRequestClearHeaders (authentication filter) -----------------------------


@dataclass(frozen=True)
class ClearCase:
    name_headers: Sequence[str] = ()
    uid_headers: Sequence[str] = ()
    group_headers: Sequence[str] = ()
    extra_prefix_headers: Sequence[str] = ()
    request_headers: GoHeader = field(default_factory=dict)
    final_headers: GoHeader | None = None


TEST_CLEAR_HEADERS: dict[str, ClearCase] = {
    "user match": ClearCase(
        name_headers=["X-Remote-User"], request_headers={"X-Remote-User": ["Bob"]}
    ),
    "user first match": ClearCase(
        name_headers=["X-Remote-User", "A-Second-X-Remote-User", "Another-X-Remote-User"],
        request_headers={
            "X-Remote-User": ["", "First header, second value"],
            "A-Second-X-Remote-User": ["Second header, first value", "Second header, second value"],
            "Another-X-Remote-User": ["Third header, first value"],
        },
    ),
    "user case-insensitive": ClearCase(
        name_headers=["x-REMOTE-user"], request_headers={"X-Remote-User": ["Bob"]}
    ),
    "groups none": ClearCase(
        name_headers=["X-Remote-User"],
        group_headers=["X-Remote-Group"],
        request_headers={"X-Remote-User": ["Bob"]},
    ),
    "groups all matches": ClearCase(
        name_headers=["X-Remote-User"],
        group_headers=["X-Remote-Group-1", "X-Remote-Group-2"],
        request_headers={
            "X-Remote-User": ["Bob"],
            "X-Remote-Group-1": ["one-a", "one-b"],
            "X-Remote-Group-2": ["two-a", "two-b"],
        },
    ),
    "groups case-insensitive": ClearCase(
        name_headers=["X-REMOTE-User"],
        group_headers=["X-REMOTE-Group"],
        request_headers={"X-Remote-User": ["Bob"], "X-Remote-Group": ["Users"]},
    ),
    "uid none": ClearCase(
        name_headers=["X-Remote-User"],
        uid_headers=["X-Remote-Uid"],
        request_headers={"X-Remote-User": ["Alice"]},
    ),
    "uid all matches": ClearCase(
        name_headers=["X-Remote-User"],
        uid_headers=["X-Remote-Uid-1", "X-Remote-Uid-2"],
        request_headers={
            "X-Remote-User": ["Alice"],
            "X-Remote-Uid-1": ["one"],
            "X-Remote-Uid-2": ["two", "three"],
        },
    ),
    "uid case-insensitive": ClearCase(
        name_headers=["X-Remote-USER"],
        uid_headers=["X-REMOTE-UID-1"],
        request_headers={"X-Remote-User": ["Alice"], "X-Remote-Uid-1": ["one"]},
    ),
    "extra prefix matches case-insensitive": ClearCase(
        name_headers=["X-Remote-User"],
        uid_headers=["X-Remote-Uid-1"],
        group_headers=["X-Remote-Group-1", "X-Remote-Group-2"],
        extra_prefix_headers=["X-Remote-Extra-1-", "X-Remote-Extra-2-"],
        request_headers={
            "X-Remote-User": ["Bob"],
            "X-Remote-Uid-1": ["bobs-uid"],
            "X-Remote-Group-1": ["one-a", "one-b"],
            "X-Remote-Group-2": ["two-a", "two-b"],
            **EXTRA_HEADERS,
        },
    ),
    "extra prefix matches case-insensitive with unrelated headers": ClearCase(
        name_headers=["X-Remote-User"],
        uid_headers=["X-Remote-Uid"],
        group_headers=["X-Remote-Group-1", "X-Remote-Group-2"],
        extra_prefix_headers=["X-Remote-Extra-1-", "X-Remote-Extra-2-"],
        request_headers={
            "X-Group-Remote": ["snorlax"],
            "X-Group-Bear": ["panda"],
            "X-Uid-Remote": ["bobs-unrelated-uid"],
            "X-Remote-User": ["Bob"],
            "X-Remote-Uid": ["bobs-uid"],
            "X-Remote-Group-1": ["one-a", "one-b"],
            "X-Remote-Group-2": ["two-a", "two-b"],
            **EXTRA_HEADERS,
        },
        final_headers={
            "X-Group-Remote": ["snorlax"],
            "X-Group-Bear": ["panda"],
            "X-Uid-Remote": ["bobs-unrelated-uid"],
        },
    ),
    "custom config but request contains standard headers": ClearCase(
        name_headers=["foo"],
        uid_headers=["footoo"],
        group_headers=["bar"],
        extra_prefix_headers=["baz"],
        request_headers={
            "X-Remote-User": ["Bob"],
            "X-Remote-Uid": ["bobs-uid"],
            "X-Remote-Group-1": ["one-a", "one-b"],
            "X-Remote-Group-2": ["two-a", "two-b"],
            **EXTRA_HEADERS,
        },
        final_headers={
            "X-Remote-Group-1": ["one-a", "one-b"],
            "X-Remote-Group-2": ["two-a", "two-b"],
        },
    ),
    "custom config but request contains standard and custom headers": ClearCase(
        name_headers=["one"],
        uid_headers=["onetoo"],
        group_headers=["two"],
        extra_prefix_headers=["three-"],
        request_headers={
            "X-Remote-User": ["Bob"],
            "X-Remote-Uid": ["bobs-uid"],
            "X-Remote-Group-3": ["one-a", "one-b"],
            "X-Remote-Group-4": ["two-a", "two-b"],
            **EXTRA_HEADERS,
            "One": ["echo", "foxtrot"],
            "Two": ["golf", "hotel"],
            "Three-Four": ["india", "juliet"],
        },
        final_headers={
            "X-Remote-Group-3": ["one-a", "one-b"],
            "X-Remote-Group-4": ["two-a", "two-b"],
        },
    ),
    "escaped extra keys": ClearCase(
        name_headers=["X-Remote-User"],
        uid_headers=["X-Remote-Uid"],
        group_headers=["X-Remote-Group"],
        extra_prefix_headers=["X-Remote-Extra-"],
        request_headers={
            "X-Remote-User": ["Bob"],
            "X-Remote-Uid": ["bobs-uid"],
            "X-Remote-Group": ["one-a", "one-b"],
            "X-Remote-Extra-Alpha": ["alphabetical"],
            "X-Remote-Extra-Alph4num3r1c": ["alphanumeric"],
            "X-Remote-Extra-Percent%20encoded": ["percent encoded"],
            "X-Remote-Extra-Almost%zzpercent%xxencoded": ["not quite percent encoded"],
            "X-Remote-Extra-Example.com%2fpercent%2520encoded": [
                "url with double percent encoding"
            ],
            "X-Remote-Extra-Example.com%2F%E4%BB%8A%E6%97%A5%E3%81%AF": ["url with unicode"],
            "X-Remote-Extra-Abc123!#$+.-_*\\^`~|'": ["header key legal characters"],
        },
    ),
}


class _AlwaysPanda:
    """The Go test's authenticator: succeeds for every request as "panda"."""

    name = "panda-authenticator"
    calls = 0

    def authenticate(self, req: AuthRequest) -> Outcome:
        self.calls += 1
        return Outcome(user=UserInfo("panda"), authenticator=self.name)


@pytest.mark.parametrize("name", list(TEST_CLEAR_HEADERS))
def test_authenticate_request_clear_headers(name: str) -> None:
    case = TEST_CLEAR_HEADERS[name]
    panda = _AlwaysPanda()
    chain = AuthenticationChain(
        authenticators=[panda],
        requestheader=RequestHeaderAuthenticator.new(
            case.name_headers, case.uid_headers, case.group_headers, case.extra_prefix_headers
        ),
    )
    result = chain.authenticate(pairs(case.request_headers))
    assert panda.calls == 1
    assert result.user is not None and result.user.name == "panda"
    assert result.headers == pairs(case.final_headers)


# --- beyond the Go tables ----------------------------------------------------------------------


def test_username_uses_first_value_only_and_moves_to_next_header() -> None:
    auth = RequestHeaderAuthenticator.new(["X-Remote-User", "X-Other-User"], [], [], [])
    headers = [("x-remote-user", ""), ("X-REMOTE-USER", "second"), ("X-Other-User", "other")]
    got = auth.authenticate(headers)
    assert got is not None and got.name == "other"
    assert auth.authenticate([("x-remote-user", ""), ("X-Remote-User", "second")]) is None


def test_groups_are_never_comma_split_and_empty_values_are_dropped() -> None:
    auth = RequestHeaderAuthenticator.new(["X-Remote-User"], [], ["X-Remote-Group"], [])
    got = auth.authenticate(
        [("X-Remote-User", "u"), ("X-Remote-Group", "a,b"), ("x-remote-group", ""),
         ("X-REMOTE-GROUP", " c ")]
    )  # fmt: skip
    assert got is not None and got.groups == ("a,b", " c ")


def test_extras_keep_empty_values_and_merge_names_mapping_to_one_key() -> None:
    auth = RequestHeaderAuthenticator.new(["X-Remote-User"], [], [], ["X-Remote-Extra-"])
    got = auth.authenticate(
        [("X-Remote-User", "u"), ("X-Remote-Extra-Scope", "a"), ("X-Remote-Extra-%73cope", "b"),
         ("x-remote-extra-scope", ""), ("X-Remote-Extra-%41", "upper")]
    )  # fmt: skip
    assert got is not None
    # One header name's values stay together; "%73" decodes to "s" after lowercasing.
    assert got.extra == {"scope": ("a", "", "b"), "A": ("upper",)}


def test_no_username_means_no_opinion_and_nothing_is_cleared() -> None:
    auth = RequestHeaderAuthenticator.new(["X-Remote-User"], [], ["X-Remote-Group"], [])
    headers = [("X-Remote-Group", "g"), ("X-Remote-User", "")]
    got, remaining = auth.authenticate_and_clear(headers)
    assert got is None
    assert remaining == headers


def test_header_names_are_trimmed_and_empty_names_rejected() -> None:
    assert trim_headers([" X-Remote-User\t", "X-A"]) == ("X-Remote-User", "X-A")
    with pytest.raises(ValueError, match=r'^empty header "  "$'):
        RequestHeaderAuthenticator.new(["X-Remote-User"], ["  "], [], [])
    with pytest.raises(ValueError, match=r'^empty header ""$'):
        trim_headers([""])


@pytest.mark.parametrize(
    ("escaped", "expected"),
    [
        ("plain", "plain"),
        ("a+b", "a+b"),
        ("%2f%2F", "//"),
        ("%41%4a", "AJ"),
        ("%E4%BB%8A", "今"),
        ("%25", "%"),
        ("%2520", "%20"),
    ],
)
def test_path_unescape(escaped: str, expected: str) -> None:
    assert path_unescape(escaped) == expected


@pytest.mark.parametrize(
    ("escaped", "error"),
    [("%zz", '"%zz"'), ("%", '"%"'), ("ab%4", '"%4"'), ("%4g-rest", '"%4g"')],
)
def test_path_unescape_errors_like_go(escaped: str, error: str) -> None:
    with pytest.raises(EscapeError) as info:
        path_unescape(escaped)
    assert str(info.value) == f"invalid URL escape {error}"


def test_invalid_utf8_survives_unescaping() -> None:
    key = path_unescape("%ff")
    assert key.encode("utf-8", "surrogateescape") == b"\xff"


def test_clear_authentication_headers_is_case_insensitive_and_keeps_order() -> None:
    headers = [("A", "1"), ("x-remote-user", "u"), ("B", "2"), ("X-REMOTE-EXTRA-k", "v"),
               ("C", "3")]  # fmt: skip
    assert clear_authentication_headers(
        headers, ["X-Remote-User"], [], [], ["X-Remote-Extra-"]
    ) == [("A", "1"), ("B", "2"), ("C", "3")]
