"""Shared fixtures: a development PKI, the API-server emulator and the proxy."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "certs"))
sys.path.insert(0, str(REPO / "addon"))

import devpki  # noqa: E402

from .e2e import Emulator, Proxy, start_emulator, start_proxy_for  # noqa: E402


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh kubeadm-shaped PKI (certs/devpki.py) for the whole test session."""
    out = tmp_path_factory.mktemp("pki")
    devpki.make_dev_pki(out, force=True)
    return out


@pytest.fixture(scope="module")
def emulator(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """The API-server emulator, one per test module."""
    emu = start_emulator(pki, tmp_path_factory.mktemp("emulator"))
    yield emu
    emu.process.stop()


@pytest.fixture(scope="module")
def proxy(
    pki: Path, emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    """The proxy in front of the module's emulator, started as the README says."""
    p = start_proxy_for(pki, tmp_path_factory.mktemp("proxy"), emulator.port)
    yield p
    p.process.stop()


@pytest.fixture(scope="module")
def limited(
    pki: Path, emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    """A proxy in front of `emulator` that takes request heads up to 8 KB."""
    p = start_proxy_for(
        pki, tmp_path_factory.mktemp("limited"), emulator.port,
        limits={"max_request_header_kb": 8},
    )  # fmt: skip
    yield p
    p.process.stop()
