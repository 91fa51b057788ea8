"""Who the user is, and how that is told to the API server in front-proxy headers.

The sending side of k8s.io/apiserver's requestheader authenticator
(pkg/authentication/request/headerrequest/requestheader.go), modelled on client-go's
transport/round_trippers.go SetAuthProxyHeaders: delete every identity header the client sent,
then set the user, one header per group, one header per extra value, and the uid.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field

from mitmproxy.http import Headers

# RFC 7230 token characters: the only bytes that may appear unescaped in a header name.
_TOKEN_CHARS = frozenset((string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~").encode())


@dataclass(frozen=True)
class Identity:
    """An authenticated user, as the API server's user.Info sees it."""

    user: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class HeaderNames:
    """The API server's --requestheader-* flags, which the proxy must mirror."""

    username: tuple[str, ...] = ("X-Remote-User",)
    group: tuple[str, ...] = ("X-Remote-Group",)
    extra_prefixes: tuple[str, ...] = ("X-Remote-Extra-",)
    uid: tuple[str, ...] = ("X-Remote-Uid",)


# kube-apiserver's defaults, as kubeadm sets them (--requestheader-*-headers).
DEFAULT_NAMES = HeaderNames()

# k8s.io/api/authentication/v1 types.go: the headers of impersonation (identity.mode impersonate),
# read by k8s.io/apiserver pkg/endpoints/filters/impersonation.go.
IMPERSONATION = HeaderNames(
    username=("Impersonate-User",),
    group=("Impersonate-Group",),
    extra_prefixes=("Impersonate-Extra-",),
    uid=("Impersonate-Uid",),
)
_IMPERSONATE_PREFIX = b"impersonate-"


def asks_to_impersonate(fields: tuple[tuple[bytes, bytes], ...]) -> bool:
    """Whether a request carries any Impersonate-* header (kubectl --as, --as-group, ...)."""
    return any(name.lower().startswith(_IMPERSONATE_PREFIX) for name, _ in fields)


def is_token(name: str) -> bool:
    """Whether name is a valid HTTP header name (an RFC 7230 token)."""
    raw = name.encode("utf-8", "surrogateescape")
    return bool(raw) and all(b in _TOKEN_CHARS for b in raw)


def escape_extra_key(key: str) -> str:
    """Percent-encode an extra key so that the API server's decoding gives key back.

    The server lowercases the header suffix, then url.PathUnescape()s it. client-go's
    headerKeyEscape encodes every byte that is not a token character, and always '%'. We also
    encode upper-case letters: after the server's lowercasing only an escape keeps them.
    """
    out = []
    for b in key.encode("utf-8"):
        if b in _TOKEN_CHARS and b != ord("%") and not (ord("A") <= b <= ord("Z")):
            out.append(chr(b))
        else:
            out.append(f"%{b:02X}")
    return "".join(out)


class IdentityHeaderWriter:
    """Strips client-sent identity headers and writes the proxy's.

    Stripped, in any letter case: every name and prefix of `names`, always the default
    X-Remote-* names (DEFAULT_NAMES: what kube-apiserver reads unless told otherwise, so that a
    config naming others cannot let them through), Authorization, and whatever the API server
    says it reads (`strip_also`, from the cluster trust check), listed in the config or not.
    """

    def __init__(self, names: HeaderNames, credential: tuple[bytes, bytes] | None = None) -> None:
        self.names = names
        # The proxy's own credential line (impersonation mode's Authorization), sent with each.
        self._credential = (credential,) if credential else ()
        self.also_stripped: tuple[HeaderNames, ...] = ()
        self._strip_exact: frozenset[bytes] = frozenset()
        self._strip_prefixes: tuple[bytes, ...] = ()
        self._strip(names, DEFAULT_NAMES)

    def _strip(self, *lists: HeaderNames) -> None:
        # Lower-cased bytes, so the per-request check is a set lookup and a prefix test.
        exact = {n.lower().encode() for ns in lists for n in ns.username + ns.group + ns.uid}
        prefixes = {p.lower().encode() for ns in lists for p in ns.extra_prefixes}
        self._strip_exact = self._strip_exact | exact | {b"authorization"}
        self._strip_prefixes = tuple(sorted(set(self._strip_prefixes) | prefixes))

    def strip_also(self, *lists: HeaderNames) -> None:
        """Strip these names too (those the API server reads, whatever the config says)."""
        new = tuple(names for names in lists if names not in self.also_stripped)
        self.also_stripped += new
        self._strip(*new)

    def is_identity_header(self, name: bytes) -> bool:
        """Whether the API server would read a header of this name as identity (or a secret)."""
        lowered = name.lower()
        return lowered in self._strip_exact or lowered.startswith(self._strip_prefixes)

    def lines_for(self, identity: Identity) -> tuple[tuple[bytes, bytes], ...]:
        """The header lines that tell the API server who this is, in order."""
        names = self.names
        lines = [(names.username[0], identity.user)]
        if identity.uid and names.uid:
            lines.append((names.uid[0], identity.uid))
        lines.extend((names.group[0], g) for g in identity.groups)
        if names.extra_prefixes:
            for key, values in identity.extra.items():
                name = names.extra_prefixes[0] + escape_extra_key(key)
                lines.extend((name, v) for v in values)
        return tuple((n.encode(), v.encode()) for n, v in lines) + self._credential

    def apply(self, headers: Headers, lines: tuple[tuple[bytes, bytes], ...]) -> None:
        """Replace every identity header and Authorization in headers with lines."""
        headers.fields = (
            tuple(f for f in headers.fields if not self.is_identity_header(f[0])) + lines
        )
