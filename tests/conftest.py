"""Shared fixtures: a development PKI, the API-server emulator (a process, or in-process for its
own tests) and the proxy; the unit/e2e marking. The helpers behind them live in tests/support/."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.emulator import EmulatorServer
from tests.support.certificates import make_dev_pki
from tests.support.emulator_pki import EmulatorPKI, kubeadm_config, make_emulator_pki
from tests.support.harness import Emulator, Proxy, start_emulator, start_proxy_for
from tests.support.processes import Process


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh kubeadm-shaped PKI (certs/devpki.py) for the whole test session."""
    out = tmp_path_factory.mktemp("pki")
    make_dev_pki(out, force=True)
    return out


@pytest.fixture(scope="module")
def emulator(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """The API-server emulator, one per test module."""
    with start_emulator(pki, tmp_path_factory.mktemp("emulator")) as emu:
        yield emu


@pytest.fixture(scope="module")
def proxy(
    pki: Path, emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    """The proxy in front of the module's emulator, started as the README says."""
    with start_proxy_for(pki, tmp_path_factory.mktemp("proxy"), emulator.port) as p:
        yield p


@pytest.fixture(scope="module")
def limited(
    pki: Path, emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    """A proxy in front of `emulator` that takes request heads up to 8 KB."""
    limits = {"max_request_header_kb": 8}
    with start_proxy_for(pki, tmp_path_factory.mktemp("limited"), emulator.port,
                         limits=limits) as p:  # fmt: skip
        yield p


@pytest.fixture(scope="module")
def emulator_pki(tmp_path_factory: pytest.TempPathFactory) -> EmulatorPKI:
    """The in-process emulator's PKI, one per module: EmulatorPKI.write keeps the first
    certificate written under a name, and modules issue their own under the same names."""
    return make_emulator_pki(tmp_path_factory.mktemp("emulator-pki"))


@pytest.fixture(scope="module")
def emulator_server(
    emulator_pki: EmulatorPKI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmulatorServer]:
    """An in-process emulator in the kubeadm layout, logging to a file."""
    log = tmp_path_factory.mktemp("emulator-log") / "requests.jsonl"
    with EmulatorServer(kubeadm_config(emulator_pki, request_log=log)) as server:
        yield server


# Tests that start real processes (the emulator, the proxy, kubectl, redis) are end-to-end;
# the rest are unit tests. `pytest -m unit` runs in seconds; `pytest -m e2e` runs the others.
_PROCESS_FIXTURES = ("emulator", "proxy", "limited", "redis", "kubectl", "mitmweb", "web")
_STARTS_PROCESS = re.compile(
    r"start_proxy|start_emulator|Process\(|RedisServer\(|subprocess\.|KUBECTL|kubectl\("
)


_E2E_MODULES = ("test_e2e_", "test_emulator_", "test_load", "test_matrix", "test_healthz")


def _starts_processes(item: pytest.Item) -> bool:
    path = Path(str(item.fspath))
    if "attacks" in path.parts or path.name.startswith(_E2E_MODULES):
        return True
    names = getattr(item, "fixturenames", ())
    if any(part in name for name in names for part in _PROCESS_FIXTURES):
        return True
    function = getattr(item, "function", None)
    try:
        return function is not None and bool(_STARTS_PROCESS.search(inspect.getsource(function)))
    except (OSError, TypeError):
        return True


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.e2e if _starts_processes(item) else pytest.mark.unit)


@pytest.fixture(autouse=True)
def _unit_tests_start_no_process(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test marked unit that starts a server process fails: the marking above is wrong."""
    if request.node.get_closest_marker("unit"):

        def refuse(*args: object, **kwargs: object) -> None:
            pytest.fail("a unit test started a process: tests/conftest.py must mark it e2e")

        monkeypatch.setattr(Process, "__init__", refuse)
