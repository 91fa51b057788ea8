"""What a request is, in the API server's terms: verb, resource, namespace, name, subresource.

A port of k8s.io/apiserver pkg/endpoints/request/requestinfo.go, RequestInfoFactory.NewRequestInfo,
with the kube-apiserver prefixes ("api", "apis"; "api" holds no group). Like the Go code, it
reads the decoded URL path and, to tell get from list and watch, the query as
metainternalversion ListOptions: the query parameters the decoding rejects (a bad labelSelector
or fieldSelector, a limit or timeoutSeconds that is no int64) are parsed here by ports of
k8s.io/apimachinery pkg/labels/selector.go Parse and pkg/fields/selector.go ParseSelector.

The verb of exec, attach and portforward is the HTTP method's: create for a POST (SPDY), get
for a GET (WebSocket). "connect" exists only in the API server's metrics (CleanVerb).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, unquote_plus

_API_PREFIXES = frozenset({"api", "apis"})
_GROUPLESS_API_PREFIXES = frozenset({"api"})
_SPECIAL_VERBS = frozenset({"proxy", "watch"})
_SPECIAL_VERBS_NO_SUBRESOURCES = frozenset({"proxy"})
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
_VERBS_WITH_SELECTORS = frozenset({"list", "watch", "deletecollection"})
_METHOD_VERBS = {
    "POST": "create",
    "GET": "get",
    "HEAD": "get",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}

# kube-apiserver's LongRunningFunc (pkg/controlplane/apiserver/config.go).
_LONG_RUNNING_VERBS = frozenset({"watch", "proxy"})
_LONG_RUNNING_SUBRESOURCES = frozenset({"attach", "exec", "proxy", "log", "portforward"})


@dataclass(frozen=True)
class RequestInfo:
    """Go's RequestInfo; parts start at the resource: (resource, name, subresource, ...)."""

    is_resource_request: bool
    path: str
    verb: str
    api_prefix: str = ""
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    parts: tuple[str, ...] = ()
    field_selector: str = ""
    label_selector: str = ""


class RequestInfoError(ValueError):
    """The path names a special verb (watch, proxy) and nothing after it.

    The API server answers such a request 500; `info` is what was known before the failure.
    """

    def __init__(self, message: str, info: RequestInfo) -> None:
        super().__init__(message)
        self.info = info


def parse_request_info(method: str, target: str) -> RequestInfo:
    """The RequestInfo of a request for target (path and query, as sent)."""
    raw_path, _, raw_query = target.partition("?")
    path = unquote(raw_path)
    non_resource = RequestInfo(False, path, method.lower())
    parts = path.strip("/").split("/") if path.strip("/") else []
    if len(parts) < 3 or parts[0] not in _API_PREFIXES:
        return non_resource
    prefix, parts = parts[0], parts[1:]
    group = ""
    if prefix not in _GROUPLESS_API_PREFIXES:
        # One part (the prefix) is gone already: this asks for four parts in all.
        if len(parts) < 3:
            return non_resource
        group, parts = parts[0], parts[1:]
    version, parts = parts[0], parts[1:]

    verb_via_path = parts[0] in _SPECIAL_VERBS
    if verb_via_path:
        if len(parts) < 2:
            partial = RequestInfo(True, path, method.lower(), prefix, group, version)
            raise RequestInfoError(
                f"unable to determine kind and namespace from url, {target}", partial
            )
        verb, parts = parts[0], parts[1:]
    else:
        verb = _METHOD_VERBS.get(method, "")

    namespace = ""
    if parts[0] == "namespaces" and len(parts) > 1:
        namespace = parts[1]
        # A step after the namespace's name that is not one of its subresources starts a
        # namespaced resource.
        if len(parts) > 2 and parts[2] not in _NAMESPACE_SUBRESOURCES:
            parts = parts[2:]

    resource = parts[0]
    name = parts[1] if len(parts) >= 2 else ""
    subresource = ""
    if len(parts) >= 3 and verb not in _SPECIAL_VERBS_NO_SUBRESOURCES:
        subresource = parts[2]

    query = parse_query(raw_query)
    if not name and verb == "get":
        try:
            watch, selected_name = _decode_list_options(query)
        except ValueError:
            # The API server falls back to the raw watch parameter and ignores the selector.
            watch = "watch" in query and query["watch"][0].lower() not in ("false", "0")
            selected_name = None
        verb = "watch" if watch else "list"
        if selected_name is not None and _is_path_segment_name(selected_name):
            name = selected_name
    if not name and verb == "delete":
        verb = "deletecollection"

    field_selector = label_selector = ""
    # Selectors are not authorized on the deprecated /watch/ paths: only some of them honour them.
    if not verb_via_path and verb in _VERBS_WITH_SELECTORS:
        field_selector = _first(query, "fieldSelector")
        label_selector = _first(query, "labelSelector")

    return RequestInfo(
        True, path, verb, prefix, group, version, namespace, resource, subresource, name,
        tuple(parts), field_selector, label_selector,
    )  # fmt: skip


def is_long_running(info: RequestInfo) -> bool:
    """Whether kube-apiserver treats the request as long-running (no timeout, two audit events).

    Port of k8s.io/apiserver pkg/server/filters/longrunning.go BasicLongRunningRequestCheck.
    """
    if info.verb in _LONG_RUNNING_VERBS:
        return True
    if info.is_resource_request:
        return info.subresource in _LONG_RUNNING_SUBRESOURCES
    return info.path.startswith("/debug/pprof/")


_Query = Mapping[str, list[str]]
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def parse_query(raw: str) -> _Query:
    """Go's url.ParseQuery, whose errors the API server ignores: the bad pairs are dropped."""
    query: dict[str, list[str]] = {}
    for pair in raw.split("&"):
        if not pair or ";" in pair:
            continue
        key, _, value = pair.partition("=")
        if _BAD_ESCAPE.search(key) or _BAD_ESCAPE.search(value):
            continue
        query.setdefault(unquote_plus(key), []).append(unquote_plus(value))
    return query


def _first(query: _Query, key: str) -> str:
    values = query.get(key)
    return values[0] if values else ""


def _decode_list_options(query: _Query) -> tuple[bool, str | None]:
    """Watch, and the name the field selector requires, as ListOptions decoding finds them.

    Raises ValueError where the API server's ParameterCodec.DecodeParameters fails.
    """
    if not query:
        return False, None
    watch = "watch" in query and not go_false(query["watch"][0])
    for key in ("timeoutSeconds", "limit"):
        if key in query and not _is_int64(query[key][0]):
            raise ValueError(f"{key} is not an integer")
    _check_label_selector(_first(query, "labelSelector"))
    return watch, _field_selector_requires(_first(query, "fieldSelector"), "metadata.name")


def go_false(value: str) -> bool:
    # Convert_Slice_string_To_bool: "0", or "false" under strings.EqualFold (Unicode folding).
    return value == "0" or value.casefold() == "false"


_INT64 = re.compile(r"[+-]?[0-9]+")


def _is_int64(value: str) -> bool:
    """Whether Go's strconv.ParseInt(value, 10, 64) accepts value."""
    return _INT64.fullmatch(value) is not None and -(2**63) <= int(value) < 2**63


def _is_path_segment_name(name: str) -> bool:
    """k8s.io/apimachinery pkg/api/validate/content IsPathSegmentName."""
    return name not in (".", "..") and "/" not in name and "%" not in name


# Field selectors: k8s.io/apimachinery pkg/fields/selector.go.

_FIELD_OPERATORS = ("!=", "==", "=")


def _field_selector_requires(selector: str, field: str) -> str | None:
    """ParseSelector(selector).RequiresExactMatch(field); ValueError if it does not parse."""
    required = None
    # The Go code sorts the terms, so the first matching term in sorted order wins.
    for term in sorted(_split_terms(selector)):
        if not term:
            continue
        lhs, operator, rhs = _split_term(term)
        value = _unescape_field_value(rhs)
        if required is None and operator != "!=" and lhs == field:
            required = value
    return required


def _split_terms(selector: str) -> list[str]:
    """The terms between commas; a backslash-escaped comma stays in its term."""
    if not selector:
        return []
    terms, start, escaped = [], 0, False
    for i, c in enumerate(selector):
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == ",":
            terms.append(selector[start:i])
            start = i + 1
    terms.append(selector[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str]:
    for i in range(len(term)):
        for operator in _FIELD_OPERATORS:
            if term.startswith(operator, i):
                return term[:i], operator, term[i + len(operator) :]
    raise ValueError(f"invalid selector: can't understand {term!r}")


def _unescape_field_value(value: str) -> str:
    out, escaped = [], False
    for c in value:
        if escaped:
            if c not in "\\,=":
                raise ValueError(f"invalid escape sequence \\{c}")
            out.append(c)
            escaped = False
        elif c == "\\":
            escaped = True
        elif c in ",=":
            raise ValueError(f"unescaped {c} in a field selector value")
        else:
            out.append(c)
    if escaped:
        raise ValueError("a field selector value ends in a backslash")
    return "".join(out)


# Label selectors: k8s.io/apimachinery pkg/labels/selector.go (Lexer, Parser, NewRequirement)
# and pkg/api/validate/content/kube.go. Only whether the API server would accept one matters.

_SPECIAL_SYMBOLS = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")
_SYMBOL_TOKENS = frozenset({")", ",", "!", "==", "=", ">", "<", "!=", "("})
_KEYWORDS = frozenset({"in", "notin"})
_IDENTIFIER, _END = "identifier", "end of string"
_LABEL_NAME = re.compile(r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS1123_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = re.compile(rf"{_DNS1123_LABEL}(?:\.{_DNS1123_LABEL})*")
_Token = tuple[str, str]  # (kind, literal); a kind is _IDENTIFIER, _END or the symbol itself


def _lex_label_selector(selector: str) -> list[_Token]:
    """labels.Lexer's tokens, up to and including the end.

    Go's lexer reads a NUL byte as the end of the string: at the start of a token it ends the
    selector, right after a token it is swallowed. Kept, so that both parsers agree.
    """
    pos = 0

    def read() -> str:
        nonlocal pos
        if pos < len(selector):
            pos += 1
            return selector[pos - 1]
        return "\0"

    tokens: list[_Token] = []
    while True:
        ch = read()
        while ch in _WHITESPACE:
            ch = read()
        if ch == "\0":
            tokens.append((_END, ""))
            return tokens
        pos -= 1
        symbol = ch in _SPECIAL_SYMBOLS
        literal = ""
        while (ch := read()) != "\0":
            # Every symbol alone is a token, so a symbol token starts with one; "!=" and "=="
            # are the longer ones.
            if symbol and ch in _SPECIAL_SYMBOLS and literal + ch in _SYMBOL_TOKENS:
                literal += ch
                continue
            if not symbol and ch not in _SPECIAL_SYMBOLS and ch not in _WHITESPACE:
                literal += ch
                continue
            pos -= 1
            break
        if symbol:
            tokens.append((literal, literal))
        else:
            tokens.append((literal if literal in _KEYWORDS else _IDENTIFIER, literal))


def _check_label_selector(selector: str) -> None:
    """Raise ValueError where labels.Parse(selector) returns an error."""
    tokens = _lex_label_selector(selector)
    pos = 0

    def peek() -> str:
        # The parser's Values context: in and notin are plain identifiers there.
        kind = tokens[pos][0]
        return _IDENTIFIER if kind in _KEYWORDS else kind

    def take() -> _Token:
        nonlocal pos
        pos += 1
        kind, literal = tokens[pos - 1]
        return (_IDENTIFIER if kind in _KEYWORDS else kind), literal

    def requirement() -> None:
        negated = peek() == "!"
        if negated:
            take()
        kind, key = take()
        if kind != _IDENTIFIER:
            raise ValueError(f"found {key!r}, expected: identifier")
        _check_label_key(key)
        if negated or peek() in (_END, ","):
            return  # exists / does not exist: no operator, no values
        operator = tokens[pos][0]  # the KeyAndOperator context: in and notin are operators
        take()
        if operator in ("in", "notin"):
            values = set_values()
        elif operator in ("=", "==", "!=", ">", "<"):
            values = exact_value()
        else:
            raise ValueError(f"found {operator!r}, expected an operator")
        if operator in (">", "<") and not _is_int64(values[0]):
            raise ValueError("for 'Gt', 'Lt' operators, the value must be an integer")
        for value in values:
            if len(value) > 63 or (value and not _LABEL_NAME.fullmatch(value)):
                raise ValueError(f"invalid label value {value!r}")

    def set_values() -> list[str]:
        if take()[0] != "(":
            raise ValueError("expected: '('")
        if peek() == ")":
            take()
            return [""]
        values: list[str] = []
        while True:
            kind, literal = take()
            if kind == _IDENTIFIER:
                values.append(literal)
                if peek() == ")":
                    take()
                    return values
                if peek() != ",":
                    raise ValueError("expected: ',' or ')'")
            elif kind == ",":
                # Go adds the empty value for "(,a)", "(a,,b)" and "(a,)"; it is always valid.
                values.append("")
                if peek() == ")":
                    take()
                    return values
            else:
                raise ValueError("expected: ',', or identifier")

    def exact_value() -> list[str]:
        if peek() in (_END, ","):
            return [""]
        kind, literal = take()
        if kind != _IDENTIFIER:
            raise ValueError(f"found {literal!r}, expected: identifier")
        return [literal]

    while True:
        if peek() == _END:
            return
        if peek() not in (_IDENTIFIER, "!"):
            raise ValueError("expected: !, identifier, or 'end of string'")
        requirement()
        kind, literal = take()
        if kind == _END:
            return
        if kind != "," or peek() not in (_IDENTIFIER, "!"):
            raise ValueError(f"found {literal!r}, expected: ',' or 'end of string'")


def _check_label_key(key: str) -> None:
    """content.IsLabelKey: an optional DNS-1123 subdomain prefix and '/', then a name."""
    prefix, slash, name = key.rpartition("/")
    valid = (
        "/" not in prefix
        and (not slash or (0 < len(prefix) <= 253 and _DNS1123_SUBDOMAIN.fullmatch(prefix)))
        and 0 < len(name) <= 63
        and _LABEL_NAME.fullmatch(name)
    )
    if not valid:
        raise ValueError(f"invalid label key {key!r}")
