"""The test users: alice (groups, uid, extras) and one user per htpasswd scheme, their
passwords, the identity headers the API server must receive for alice, and Basic credentials."""

from __future__ import annotations

import base64
from pathlib import Path

from .configs import htpasswd_add, write_yaml

# One user per htpasswd scheme, each with the scheme in its password.
SCHEME_USERS = {
    "bcrypt": "bcrypt-user",
    "apr1": "apr1-user",
    "sha256": "sha256-user",
    "sha512": "sha512-user",
    "sha1": "sha1-user",
}
ALICE_PASSWORD = "alice-pässword"
ALICE = {
    "groups": ["developers", "system:masters", "a,b"],
    "uid": "1001",
    "extra": {"scopes": ["view", "edit"], "acme.com/project": ["payments"]},
}

# What the API server receives for alice, header line by header line.
ALICE_LINES = [
    ["X-Remote-User", "alice"],
    ["X-Remote-Uid", "1001"],
    ["X-Remote-Group", "developers"],
    ["X-Remote-Group", "system:masters"],
    ["X-Remote-Group", "a,b"],
    ["X-Remote-Extra-scopes", "view"],
    ["X-Remote-Extra-scopes", "edit"],
    ["X-Remote-Extra-acme.com%2Fproject", "payments"],
]


def password_of(user: str) -> str:
    return ALICE_PASSWORD if user == "alice" else f"{user}-secret"


def write_users(directory: Path) -> None:
    htpasswd_add(directory / "htpasswd", "alice", ALICE_PASSWORD, "bcrypt")
    for scheme, user in SCHEME_USERS.items():
        htpasswd_add(directory / "htpasswd", user, password_of(user), scheme)
    write_yaml(directory / "users.yaml", {"users": {"alice": ALICE}})


def basic_header(user: str, password: str) -> tuple[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return ("Authorization", f"Basic {token}")


# A static token file (authn.tokens): ci-bot's token, and another user's.
TOKEN = "kfp-token-31b7c0e0d6a54f8f"
TOKENS_CSV = f'{TOKEN},ci-bot,42,"deployers,system:masters"\nother-token,viewer,7\n'
