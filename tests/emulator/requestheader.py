"""The front-proxy ("requestheader") authenticator, as pure functions over a header list.

Follows `k8s.io/apiserver pkg/authentication/request/headerrequest/requestheader.go`
(`New`, `trimHeaders`, `AuthenticateRequest`, `headerValue`, `allHeaderValues`, `newExtra`,
`unescapeExtraKey`, `ClearAuthenticationHeaders`, `hasPrefixIgnoreCase`) and Go's
`net/url.PathUnescape` (`net/url/url.go`, `unescape` with mode `encodePathSegment`).

Headers are given as received: an ordered sequence of (name, value) pairs, names in any case,
repeated names allowed. Go's `net/http` server folds such a list into an `http.Header` map keyed by
the canonical name, keeping the values of each name in arrival order; the helpers here reproduce
that view (see `header_map`) so that "first value of a header" and "all values of a header"
mean exactly what they mean in Go.

No I/O and no TLS here: the client-certificate check that guards this authenticator lives in
`authn.py` / `x509verify.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

Header = tuple[str, str]
Headers = Sequence[Header]

# The names the authentication filter always clears, whatever the server is configured with
# (`k8s.io/apiserver pkg/endpoints/filters/authentication.go`, `standardRequestHeaderConfig`).
STANDARD_USERNAME_HEADERS = ("X-Remote-User",)
STANDARD_UID_HEADERS = ("X-Remote-Uid",)
STANDARD_GROUP_HEADERS = ("X-Remote-Group",)
STANDARD_EXTRA_HEADER_PREFIXES = ("X-Remote-Extra-",)


@dataclass(frozen=True)
class UserInfo:
    """`k8s.io/apiserver pkg/authentication/user` `DefaultInfo`."""

    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    # Go map: key order carries no meaning; value order does.
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        """`authentication/v1` `UserInfo` shape (all fields omitempty), for logs and tests."""
        return {
            "username": self.name,
            "uid": self.uid,
            "groups": list(self.groups),
            "extra": {k: list(v) for k, v in sorted(self.extra.items())},
        }


class EscapeError(ValueError):
    """Go's `url.EscapeError`."""

    def __init__(self, escape: bytes) -> None:
        self.escape = escape
        text = escape.decode("utf-8", "surrogateescape")
        super().__init__(f"invalid URL escape {_go_quote(text)}")


def _go_quote(text: str) -> str:
    # strconv.Quote is close enough to a JSON string for the short fragments quoted here.
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


_HEX = frozenset(b"0123456789abcdefABCDEF")


def path_unescape(s: str) -> str:
    """Go's `url.PathUnescape`.

    Every `%` must start a two-hex-digit escape, otherwise `EscapeError` (quoting at most three
    bytes from the `%`, like Go). `+` is kept as `+`: only query unescaping turns it into a space.
    Decoded bytes that are not valid UTF-8 survive as surrogate escapes, as Go strings would keep
    the raw bytes.
    """
    raw = s.encode("utf-8", "surrogateescape")
    if b"%" not in raw:
        return s
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] != 0x25:  # '%'
            out.append(raw[i])
            i += 1
            continue
        if i + 2 >= len(raw) or raw[i + 1] not in _HEX or raw[i + 2] not in _HEX:
            raise EscapeError(raw[i : i + 3])
        out.append(int(raw[i + 1 : i + 3], 16))
        i += 3
    return out.decode("utf-8", "surrogateescape")


def trim_headers(header_names: Iterable[str]) -> tuple[str, ...]:
    """`trimHeaders`: strip surrounding whitespace; an empty result is a configuration error."""
    trimmed: list[str] = []
    for name in header_names:
        # strings.TrimSpace trims Unicode white space, as str.strip() does.
        stripped = name.strip()
        if not stripped:
            raise ValueError(f"empty header {_go_quote(name)}")
        trimmed.append(stripped)
    return tuple(trimmed)


def _fold(name: str) -> str:
    # Header names are tokens (ASCII); Go compares them with CanonicalHeaderKey/EqualFold.
    return name.lower()


def header_map(headers: Headers) -> dict[str, tuple[str, list[str]]]:
    """The `http.Header` view of a header list.

    Returns {folded name: (name as first spelled, [values in arrival order])}, in order of first
    appearance. Go would key the map by the canonical spelling; only the folded form matters here.
    """
    grouped: dict[str, tuple[str, list[str]]] = {}
    for name, value in headers:
        entry = grouped.setdefault(_fold(name), (name, []))
        entry[1].append(value)
    return grouped


def _all_values(headers: Headers, name: str) -> list[str]:
    folded = _fold(name)
    return [v for n, v in headers if _fold(n) == folded]


def has_prefix_ignore_case(s: str, prefix: str) -> bool:
    """`hasPrefixIgnoreCase`."""
    return len(s) >= len(prefix) and _fold(s[: len(prefix)]) == _fold(prefix)


def header_value(headers: Headers, header_names: Sequence[str]) -> str:
    """`headerValue`: the first configured header whose FIRST value is non-empty.

    `Header.Get` only ever looks at the first value, so `X-Remote-User: ""` followed by a second
    `X-Remote-User: bob` yields nothing from that header and the next configured name is tried.
    """
    for name in header_names:
        values = _all_values(headers, name)
        if values and values[0]:
            return values[0]
    return ""


def all_header_values(headers: Headers, header_names: Sequence[str]) -> list[str]:
    """`allHeaderValues`: every non-empty value of every configured header, never comma-split."""
    result: list[str] = []
    for name in header_names:
        result.extend(v for v in _all_values(headers, name) if v)
    return result


def unescape_extra_key(encoded_key: str) -> str:
    """`unescapeExtraKey`: a key that does not unescape is kept as it came."""
    try:
        return path_unescape(encoded_key)
    except EscapeError:
        return encoded_key


def new_extra(headers: Headers, header_prefixes: Sequence[str]) -> dict[str, list[str]]:
    """`newExtra`.

    Prefixes are walked in configured order so that value order follows it. Within one prefix Go
    iterates a map, so the order among different header names mapping to the same key is
    undefined there; here it is first-appearance order, one of the orders Go could produce.
    The key is lowercased BEFORE unescaping, so only an escape such as `%41` can yield uppercase.
    Empty values are kept (unlike groups).
    """
    extra: dict[str, list[str]] = {}
    grouped = header_map(headers)
    for prefix in header_prefixes:
        for name, values in grouped.values():
            if not has_prefix_ignore_case(name, prefix):
                continue
            key = unescape_extra_key(name[len(prefix) :].lower())
            extra.setdefault(key, []).extend(values)
    return extra


def clear_authentication_headers(
    headers: Headers,
    name_headers: Sequence[str],
    uid_headers: Sequence[str],
    group_headers: Sequence[str],
    extra_header_prefixes: Sequence[str],
) -> list[Header]:
    """`ClearAuthenticationHeaders`: the header list without the named headers and prefixes.

    Names are removed case-insensitively with all their values (`Header.Del`), and so is every
    header whose name starts with one of the prefixes, case-insensitively.
    """
    exact = {_fold(n) for n in (*name_headers, *uid_headers, *group_headers)}
    return [
        (n, v)
        for n, v in headers
        if _fold(n) not in exact
        and not any(has_prefix_ignore_case(n, p) for p in extra_header_prefixes)
    ]


@dataclass(frozen=True)
class RequestHeaderAuthenticator:
    """`requestHeaderAuthRequestHandler` built by `headerrequest.New`.

    Construct with `RequestHeaderAuthenticator.new(...)`, which trims and validates the names.
    """

    name_headers: tuple[str, ...]
    uid_headers: tuple[str, ...]
    group_headers: tuple[str, ...]
    extra_header_prefixes: tuple[str, ...]

    @classmethod
    def new(
        cls,
        name_headers: Iterable[str],
        uid_headers: Iterable[str],
        group_headers: Iterable[str],
        extra_header_prefixes: Iterable[str],
    ) -> RequestHeaderAuthenticator:
        """`headerrequest.New`: raises ValueError("empty header ...") like `trimHeaders`."""
        return cls(
            trim_headers(name_headers),
            trim_headers(uid_headers),
            trim_headers(group_headers),
            trim_headers(extra_header_prefixes),
        )

    def authenticate(self, headers: Headers) -> UserInfo | None:
        """`AuthenticateRequest` minus the header cleanup: the user, or None for "no opinion".

        This authenticator never returns an error: without a username it abstains.
        """
        name = header_value(headers, self.name_headers)
        if not name:
            return None
        return UserInfo(
            name=name,
            uid=header_value(headers, self.uid_headers),
            groups=tuple(all_header_values(headers, self.group_headers)),
            extra={k: tuple(v) for k, v in new_extra(headers, self.extra_header_prefixes).items()},
        )

    def clear(self, headers: Headers) -> list[Header]:
        """The cleanup `AuthenticateRequest` does on success: the configured headers removed."""
        return clear_authentication_headers(
            headers,
            self.name_headers,
            self.uid_headers,
            self.group_headers,
            self.extra_header_prefixes,
        )

    def authenticate_and_clear(self, headers: Headers) -> tuple[UserInfo | None, list[Header]]:
        """Both halves of `AuthenticateRequest`: headers are only cleared when a user is found."""
        user = self.authenticate(headers)
        if user is None:
            return None, list(headers)
        return user, self.clear(headers)
