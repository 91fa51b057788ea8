"""Static bearer tokens in kube-apiserver's --token-auth-file format.

Each line is `token,user,uid,"group1,group2"` (groups optional). With `authn.token_hashes`,
the first column holds the SHA-256 of the token in hex instead, so that the file on disk does
not hold the secrets. Either way tokens are looked up by their SHA-256: a dictionary lookup on
a digest leaks nothing about the stored tokens through timing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re

from kube_front_proxy.authn.users import header_value_problem
from kube_front_proxy.config.settings import FileRef
from kube_front_proxy.identity.headers import Identity

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class TokenFile:
    def __init__(self, ref: FileRef, hashed: bool, can_send_groups: bool = True) -> None:
        try:
            text = ref.path.read_text(encoding="utf-8")
        except OSError as e:
            raise ref.error(f"cannot read: {e.strerror or e}") from None
        except UnicodeDecodeError:
            raise ref.error("not UTF-8 text") from None
        self._identities: dict[bytes, Identity] = {}
        # newline="": a CR or LF inside a quoted field stays in it, to be refused below.
        reader = csv.reader(io.StringIO(text, newline=""))
        while True:
            where = f"line {reader.line_num + 1}"  # never the token itself
            row = next(reader, None)
            if row is None:
                break
            if not "".join(row).strip():
                continue
            if len(row) < 3 or not row[0] or not row[1]:
                raise ref.error(f'{where}: expected token,user,uid[,"group1,group2"]')
            token, user, uid = row[0], row[1], row[2]
            groups = tuple(g for g in (row[3].split(",") if len(row) > 3 else []) if g)
            if groups and not can_send_groups:
                raise ref.error(f"{where}: groups cannot be sent: identity.group_headers is empty")
            for value in (user, uid, *groups):
                problem = header_value_problem(value)
                if problem:
                    raise ref.error(f"{where}: {problem}")
            if hashed:
                if not _SHA256_HEX.fullmatch(token):
                    raise ref.error(f"{where}: not a SHA-256 in lower-case hex")
                digest = bytes.fromhex(token)
            else:
                digest = token_digest(token)
            if digest in self._identities:
                raise ref.error(f"{where}: the same token appears twice")
            self._identities[digest] = Identity(user=user, groups=groups, uid=uid)

    def identities(self) -> dict[bytes, Identity]:
        return dict(self._identities)
