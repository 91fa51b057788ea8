"""Timing must not tell which user names exist, even when htpasswd mixes hash schemes.

A refused login costs one hash check: the user's entry, or for an unknown name a stand-in. With
one stand-in for every unknown name (the file's first entry), a file with a bcrypt user first
and faster schemes after answered every unknown name in bcrypt time and every user of a fast
scheme in a millisecond: a name answered fast existed (bench/user_enumeration.py measures it).
No test here times anything: the hash work itself is observed (which entry each check runs
against), since the time of a check is the time of its hash.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from kube_front_proxy.authn import htpasswd as htpasswd_module
from kube_front_proxy.authn.htpasswd import Htpasswd
from kube_front_proxy.config.settings import FileRef
from tests.support.configs import htpasswd_add

SCHEMES = ["bcrypt", "apr1", "sha256", "sha512", "sha1"]
NAMES = [f"nobody-{i}" for i in range(500)]


@pytest.fixture()
def mixed(tmp_path: Path) -> Path:
    """One user per scheme, the slow one first (as a file grows: admin first)."""
    path = tmp_path / "htpasswd"
    for scheme in SCHEMES:
        htpasswd_add(path, f"{scheme}-user", f"{scheme}-password", scheme)
    return path


def load(path: Path) -> Htpasswd:
    return Htpasswd(FileRef(path, path.parent / "config.yaml", "authn.htpasswd"))


def checked_against(file: Htpasswd, monkeypatch: pytest.MonkeyPatch, user: str) -> str:
    """The hash a refused login of `user` runs."""
    used: list[str] = []
    real = htpasswd_module.verify_hash

    def recording(password: str, hashed: str) -> bool:
        used.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(htpasswd_module, "verify_hash", recording)
    assert not file.verify(user, "wrong")
    monkeypatch.setattr(htpasswd_module, "verify_hash", real)
    [hashed] = used
    return hashed


def test_unknown_names_cost_what_the_users_cost(
    mixed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = load(mixed)
    scheme_of = {file.hash_of(f"{s}-user"): s for s in SCHEMES}
    for scheme in SCHEMES:
        assert scheme_of[checked_against(file, monkeypatch, f"{scheme}-user")] == scheme
    shares = Counter(scheme_of[checked_against(file, monkeypatch, n)] for n in NAMES)
    # Each entry stands in for about a fifth of the names (binomial, 500 draws: 100 +- 27 at
    # three standard deviations), so a name's time says nothing about whether it exists.
    assert set(shares) == set(SCHEMES)
    assert all(60 <= count <= 140 for count in shares.values()), shares


def test_a_name_costs_the_same_every_time_and_on_every_replica(
    mixed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, replica = load(mixed), load(mixed)
    for name in NAMES[:50]:
        stand_in = checked_against(first, monkeypatch, name)
        assert checked_against(first, monkeypatch, name) == stand_in
        assert checked_against(replica, monkeypatch, name) == stand_in


def test_a_stand_in_users_password_does_not_log_in_an_unknown_name(mixed: Path) -> None:
    # The stand-in is a real user's entry: that user's password must still be refused.
    file = load(mixed)
    for name in NAMES[:20]:
        assert not any(file.verify(name, f"{s}-password") for s in SCHEMES)
