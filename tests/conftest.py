"""Shared fixtures: a development PKI, htpasswd files made by Apache's own tool."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "certs"))
sys.path.insert(0, str(REPO / "addon"))

import devpki  # noqa: E402


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh kubeadm-shaped PKI (certs/devpki.py) for the whole test session."""
    out = tmp_path_factory.mktemp("pki")
    devpki.make_dev_pki(out, force=True)
    return out


HTPASSWD_FLAGS = {
    "bcrypt": ["-B", "-C", "5"],
    "apr1": ["-m"],
    "sha256": ["-2"],
    "sha512": ["-5"],
    "sha1": ["-s"],
}


def htpasswd_add(path: Path, user: str, password: str, scheme: str) -> None:
    """Add a user with Apache's real htpasswd tool (apache2-utils)."""
    tool = shutil.which("htpasswd")
    if tool is None:
        pytest.fail("htpasswd (apache2-utils) is required; .ci/run installs it")
    create = [] if path.exists() else ["-c"]
    subprocess.run(
        [tool, "-b", *create, *HTPASSWD_FLAGS[scheme], str(path), user, password],
        check=True,
        capture_output=True,
    )
