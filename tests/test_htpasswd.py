"""Password checks against files written by Apache's real htpasswd tool."""

from __future__ import annotations

from pathlib import Path

import pytest

from kube_front_proxy.authn.htpasswd import Htpasswd
from kube_front_proxy.config.errors import ConfigError
from tests.support.configs import HTPASSWD_FLAGS, htpasswd_add, htpasswd_ref


@pytest.mark.parametrize("scheme", sorted(HTPASSWD_FLAGS))
def test_every_htpasswd_scheme(tmp_path: Path, scheme: str) -> None:
    path = tmp_path / "htpasswd"
    htpasswd_add(path, "user", "s3cret pässword", scheme)
    file = Htpasswd(htpasswd_ref(path))
    assert file.verify("user", "s3cret pässword")
    assert not file.verify("user", "s3cret passwort")
    assert not file.verify("user", "")
    assert not file.verify("nobody", "s3cret pässword")


def test_bcrypt_long_password_works_like_apache(tmp_path: Path) -> None:
    # Apache's bcrypt uses the first 72 bytes; the bcrypt module would raise instead.
    path = tmp_path / "htpasswd"
    password = "x" * 100
    htpasswd_add(path, "long", password, "bcrypt")
    file = Htpasswd(htpasswd_ref(path))
    assert file.verify("long", password)
    assert not file.verify("long", "y" * 100)


def test_unknown_user_is_checked_against_a_real_hash(tmp_path: Path) -> None:
    # Same work for unknown and known users: no timing oracle on user names.
    path = tmp_path / "htpasswd"
    htpasswd_add(path, "alice", "pw", "apr1")
    file = Htpasswd(htpasswd_ref(path))
    # The decoy's password does not let an unknown user in.
    assert not file.verify("mallory", "pw")


@pytest.mark.parametrize("flag", ["-p", "-d"])
def test_plaintext_and_des_entries_are_refused(tmp_path: Path, flag: str) -> None:
    import subprocess

    path = tmp_path / "htpasswd"
    subprocess.run(["htpasswd", "-cb", flag, str(path), "weak", "pw"], check=True,
                   capture_output=True)  # fmt: skip
    with pytest.raises(ConfigError) as e:
        Htpasswd(htpasswd_ref(path))
    message = str(e.value)
    assert "authn.htpasswd" in message and str(path) in message and "'weak'" in message
    assert "pw" not in message.replace(str(path), "").replace("htpasswd", "")


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        Htpasswd(htpasswd_ref(tmp_path / "absent"))
    bad = tmp_path / "bad"
    bad.write_text("no-colon-here\n")
    with pytest.raises(ConfigError, match="not an htpasswd file"):
        Htpasswd(htpasswd_ref(bad))
    empty = tmp_path / "empty"
    empty.write_text("")
    with pytest.raises(ConfigError, match="no users"):
        Htpasswd(htpasswd_ref(empty))
