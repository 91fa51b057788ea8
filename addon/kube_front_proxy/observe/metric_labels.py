"""Label values of the Prometheus metrics, each from a closed set.

Every label value is a series, and a series lives until the process ends. A value taken from a
request as sent lets any client, logged in or not, grow /metrics without bound (random
2,000-character methods made it 65 MB). So every value here comes from a fixed list, with
`other` for anything else; user names, which no list can hold, are capped in number.
"""

from __future__ import annotations

from collections.abc import Collection

OTHER = "other"

# The verbs request_info gives resource requests, and the lower-case HTTP methods that name
# non-resource requests (/healthz, /version): RFC 9110's and PATCH.
VERBS = frozenset(
    {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "proxy"}
    | {"head", "post", "put", "options", "connect", "trace"}
)

# Past this many users, the others share one `user` label value (metrics.per_user).
MAX_USERS = 1000


def verb(value: str) -> str:
    return value if value in VERBS else OTHER


def code(value: int) -> str:
    return str(value) if 100 <= value <= 599 else OTHER


def one_of(value: str, known: Collection[str]) -> str:
    return value if value in known else OTHER


def reason(value: str, phrases: Collection[str], authenticators: Collection[str]) -> str:
    """A refusal's reason: one of the fixed phrases, or `name: phrase; ...` when several
    authenticators refused (a finite set: at most one phrase per authenticator)."""
    if value in phrases:
        return value
    for part in value.split("; "):
        name, _, phrase = part.partition(": ")
        if name not in authenticators or phrase not in phrases:
            return OTHER
    return value


class UserLabels:
    """A logged-in user's own label value, for the first `limit` users seen; `other` after."""

    def __init__(self, limit: int = MAX_USERS) -> None:
        self.limit = limit
        self._seen: set[str] = set()

    def __call__(self, user: str) -> str:
        if user in self._seen:
            return user
        if len(self._seen) >= self.limit:
            return OTHER
        self._seen.add(user)
        return user
