"""The locked dependency set is what is installed, tested and shipped."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from kube_front_proxy import seam
from tests.support.processes import REPO

_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^ \\]+)", re.MULTILINE)


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def _pins(lock: Path) -> dict[str, str]:
    return {_normal(name): version for name, version in _PIN.findall(lock.read_text())}


def test_the_test_environment_is_exactly_the_lock() -> None:
    pins = _pins(REPO / "requirements-test.lock")
    assert pins, "no pins in requirements-test.lock"
    installed = {_normal(d.metadata["Name"]): d.version for d in metadata.distributions()}
    wrong = {name: (version, installed.get(name))
             for name, version in pins.items() if installed.get(name) != version}  # fmt: skip
    assert not wrong


def test_every_lock_line_is_hashed_and_runtime_is_a_subset_of_test() -> None:
    runtime, test = REPO / "requirements.lock", REPO / "requirements-test.lock"
    for lock in (runtime, test):
        text = lock.read_text()
        assert len(_PIN.findall(text)) == text.count("==") > 0
        for block in text.split("\n\n"):
            for requirement in _PIN.findall(block):
                assert "--hash=sha256:" in block, requirement
    assert _pins(runtime).items() <= _pins(test).items()


def test_mitmproxy_is_the_release_the_seam_was_checked_against() -> None:
    assert _pins(REPO / "requirements.lock")["mitmproxy"] == seam.TESTED_WITH
    assert f'"mitmproxy=={seam.TESTED_WITH}"' in (REPO / "pyproject.toml").read_text()


def test_setup_and_image_install_from_the_lock_with_hashes() -> None:
    setup = (REPO / "scripts" / "setup.sh").read_text()
    assert "--require-hashes -r" in setup and "--no-deps -e ." in setup
    containerfile = (REPO / "deploy" / "Containerfile").read_text()
    assert "--require-hashes -r requirements.lock" in containerfile
    assert "--no-deps ." in containerfile
