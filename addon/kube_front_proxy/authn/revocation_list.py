"""Taking session tokens back before they expire: `authn.session_tokens.revocation_file`, one
token by its id, or every token of a user issued up to a time. The file is watched and reloaded
like every other file:

```yaml
tokens:                            # token ids, as the audit log and the proxy's log name them
  - 3q2-7wK9xQeYwH0oJ1n5aA
users:                             # every token of the user issued at or before this time
  alice: 2025-06-01T12:00:00Z
```

Logging in again gives a user a new token unless their entry lies in the future: an entry
with a time to come refuses their tokens until then, new ones included. With state.redis, the
file's token ids also go into the set every process shares (authn/revocation.py), so that a replica
whose copy of the file is older refuses them too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from kube_front_proxy.authn.users import header_value_problem
from kube_front_proxy.config.yamlfile import read_mapping

# Token ids are 128 random bits in unpadded base64url (session_tokens.new_token_id).
TOKEN_ID = re.compile(r"[A-Za-z0-9_-]{22}")


class RevocationList:
    """The revocations of one file; an empty list without a file."""

    def __init__(self, path: Path | None = None) -> None:
        self.token_ids: frozenset[str] = frozenset()
        self.users: Mapping[str, float] = {}
        if path is not None:
            self._read(path)

    def _read(self, path: Path) -> None:
        root = read_mapping(path)
        ids = root.string_list("tokens")
        for i, token_id in enumerate(ids):
            if not TOKEN_ID.fullmatch(token_id):
                raise root.error(f"tokens[{i}]", "not a token id (22 characters of base64url)")
        users = root.section("users")
        cutoffs: dict[str, float] = {}
        for name in users.names():
            if not isinstance(name, str) or not name or header_value_problem(name):
                raise users.error(str(name), "not a user name")
            cutoffs[name] = users.timestamp(name).timestamp()
        users.finish()
        root.finish()
        self.token_ids = frozenset(ids)
        self.users = cutoffs

    def revoked(self, token_id: str, user: str, issued_at: float) -> bool:
        """Whether the token (its id, user and issue time) has been taken back."""
        cutoff = self.users.get(user)
        return token_id in self.token_ids or (cutoff is not None and issued_at <= cutoff)
