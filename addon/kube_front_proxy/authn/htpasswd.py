"""Password checks against an Apache htpasswd file, through passlib's HtpasswdFile."""

from __future__ import annotations

import hashlib
import hmac

from passlib.apache import HtpasswdFile
from passlib.context import CryptContext
from passlib.exc import UnknownHashError

from kube_front_proxy.authn.users import check_user_name
from kube_front_proxy.config.settings import FileRef

# What Apache's htpasswd writes, minus what must never be accepted: plain text (-p), where any
# unrecognised "hash" would be taken as the password itself, and 8-character DES crypt (-d).
SCHEMES = CryptContext(
    schemes=["bcrypt", "apr_md5_crypt", "sha256_crypt", "sha512_crypt", "ldap_sha1"]
)

# bcrypt only ever hashes the first 72 bytes; Apache and nginx truncate silently, the bcrypt
# module raises instead. Truncating keeps long passwords made with `htpasswd -B` working.
_BCRYPT_MAX_BYTES = 72


class Htpasswd:
    """The users and password hashes of one htpasswd file, checked at load."""

    def __init__(self, ref: FileRef) -> None:
        try:
            file = HtpasswdFile(str(ref.path), context=SCHEMES, encoding="utf-8")
        except OSError as e:
            raise ref.error(f"cannot read: {e.strerror or e}") from None
        except (ValueError, UnicodeDecodeError) as e:
            # passlib's message names the line, never a hash.
            raise ref.error(f"not an htpasswd file: {e}") from None
        self._hashes: dict[str, str] = {}
        for user in file.users():
            check_user_name(ref.path, user)
            hashed = file.get_hash(user)
            if isinstance(hashed, bytes):
                hashed = hashed.decode("ascii")
            try:
                SCHEMES.identify(hashed, required=True)
            except UnknownHashError:
                raise ref.error(
                    f"user {user!r}: unsupported hash; use bcrypt (htpasswd -B), apr1 (-m), "
                    "sha256-crypt (-2), sha512-crypt (-5) or {SHA} (-s)"
                ) from None
            self._hashes[user] = hashed
        if not self._hashes:
            raise ref.error("no users")
        self._decoys = list(self._hashes.values())
        # Derived from the file: every replica, and the proxy after a restart, picks the same
        # entry for a name; an attacker who could compute it would already have the hashes.
        entries = "\n".join(f"{user}:{hashed}" for user, hashed in sorted(self._hashes.items()))
        self._decoy_key = hashlib.sha256(entries.encode()).digest()

    def users(self) -> list[str]:
        return list(self._hashes)

    def hash_of(self, user: str) -> str | None:
        return self._hashes.get(user)

    def verify(self, user: str, password: str) -> bool:
        """Check a password; slow on purpose (bcrypt): call it off the event loop."""
        hashed = self._hashes.get(user)
        ok = verify_hash(password, hashed or self.decoy(user))
        return ok and hashed is not None

    def decoy(self, user: str) -> str:
        """The entry an unknown user name is checked against, so that it costs what a user
        of the file costs.

        One entry for all (the first) gave every unknown name the time of one scheme, so that
        with mixed schemes a name answered faster or slower was a user. Each name gets one of
        the real entries instead, always the same, chosen by an HMAC of the name: unknown names
        spread over the schemes (and bcrypt costs) as the users do, and repeating a name
        shows the same time each attempt, as a user's does.
        """
        digest = hmac.digest(self._decoy_key, user.encode("utf-8", "surrogateescape"), "sha256")
        return self._decoys[int.from_bytes(digest[:8], "big") % len(self._decoys)]


def verify_hash(password: str, hashed: str) -> bool:
    """passlib's verify (a constant-time comparison), with bcrypt's 72-byte rule applied."""
    secret = password.encode("utf-8")
    if SCHEMES.identify(hashed) == "bcrypt":
        secret = secret[:_BCRYPT_MAX_BYTES]
    try:
        return bool(SCHEMES.verify(secret, hashed))
    except ValueError:
        # e.g. passlib's limit on absurdly long secrets: a failed login, not an error.
        return False
