"""The emulator's fault controls: response delays (fixed and live) and a failing /readyz."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.emulator import EmulatorServer
from tests.emulator.__main__ import config_from_args, parse_args
from tests.support.certificates import issue
from tests.support.emulator_pki import EmulatorPKI, kubeadm_config, request
from tests.support.http1 import H1Response

READY_CHECKS = "[+]ping ok\n[+]log ok\n[+]etcd ok\n[+]etcd-readiness ok\n[+]informer-sync ok\n"


def timed(
    server: EmulatorServer, pki: EmulatorPKI, path: str = "/readyz"
) -> tuple[float, H1Response]:
    start = time.monotonic()
    response = request(server, pki, "GET", path)
    return time.monotonic() - start, response


@pytest.fixture
def controls(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "delay", tmp_path / "not-ready"


@pytest.fixture
def server(
    emulator_pki: EmulatorPKI,
    controls: tuple[Path, Path],
) -> Iterator[EmulatorServer]:
    delay_file, not_ready_file = controls
    config = kubeadm_config(
        emulator_pki,
        response_delay=0.0,
        response_delay_file=delay_file,
        not_ready_file=not_ready_file,
    )
    with EmulatorServer(config) as s:
        yield s


def test_fixed_response_delay_changes_timing_only(emulator_pki: EmulatorPKI) -> None:
    with EmulatorServer(kubeadm_config(emulator_pki)) as fast:
        fast_time, fast_response = timed(fast, emulator_pki, "/version")
    with EmulatorServer(kubeadm_config(emulator_pki, response_delay=0.4)) as slow:
        slow_time, slow_response = timed(slow, emulator_pki, "/version")
        unauthorized = request(slow, emulator_pki, "GET", "/api", [("Authorization", "Bearer x")])
    assert fast_time < 0.3
    assert 0.4 <= slow_time < 1.5
    assert slow_response.body == fast_response.body
    names = {n for n, _ in slow_response.headers}
    assert names == {n for n, _ in fast_response.headers}
    assert names == {"Audit-Id", "Cache-Control", "Content-Type", "Date", "Content-Length"}
    assert unauthorized.status == 401  # every response waits, refusals too


def test_delay_file_slows_a_running_server_down_and_back(
    server: EmulatorServer,
    emulator_pki: EmulatorPKI,
    controls: tuple[Path, Path],
) -> None:
    delay_file, _ = controls
    assert timed(server, emulator_pki)[0] < 0.3  # no file: --response-delay (0)
    delay_file.write_text("0.5\n")
    elapsed, response = timed(server, emulator_pki)
    assert 0.5 <= elapsed < 1.5
    assert (response.status, response.body) == (200, b"ok")
    delay_file.write_text("0")
    assert timed(server, emulator_pki)[0] < 0.3
    delay_file.write_text("soon")  # unreadable: the flag's value
    assert timed(server, emulator_pki)[0] < 0.3
    delay_file.unlink()
    assert timed(server, emulator_pki)[0] < 0.3


def test_not_ready_file_fails_readyz_like_a_shutdown(
    server: EmulatorServer,
    emulator_pki: EmulatorPKI,
    controls: tuple[Path, Path],
) -> None:
    _, not_ready = controls
    ok = request(server, emulator_pki, "GET", "/readyz")
    assert (ok.status, ok.body) == (200, b"ok")
    verbose = request(server, emulator_pki, "GET", "/readyz?verbose")
    assert verbose.body == (READY_CHECKS + "[+]shutdown ok\nreadyz check passed\n").encode()

    not_ready.touch()
    failed = request(server, emulator_pki, "GET", "/readyz")
    assert failed.status == 500
    assert failed.header("Content-Type") == "text/plain; charset=utf-8"
    assert failed.header("X-Content-Type-Options") == "nosniff"
    assert (
        failed.body
        == (READY_CHECKS + "[-]shutdown failed: reason withheld\nreadyz check failed\n").encode()
    )
    # Only /readyz itself is public (system:public-info-viewer); its checks need a user.
    jane = emulator_pki.write(issue(emulator_pki.cluster_ca, "jane"), "jane")
    single = request(server, emulator_pki, "GET", "/readyz/shutdown", cert=jane)
    assert (single.status, single.body) == (
        500,
        b"internal server error: process is shutting down\n",
    )
    # Only readiness fails: the server still serves, and is still live.
    assert request(server, emulator_pki, "GET", "/livez").status == 200
    assert request(server, emulator_pki, "GET", "/version").status == 200

    not_ready.unlink()
    assert request(server, emulator_pki, "GET", "/readyz").status == 200
    assert server.records()[-1]["status"] == 200


def test_fault_flags(tmp_path: Path) -> None:
    base = ["--tls-cert-file", "c", "--tls-private-key-file", "k"]
    config = config_from_args(
        parse_args([
            *base, "--response-delay", "0.25", "--response-delay-file", str(tmp_path / "d"),
            "--not-ready-file", str(tmp_path / "n"),
        ])
    )  # fmt: skip
    assert (config.response_delay, config.response_delay_file, config.not_ready_file) == (
        0.25,
        tmp_path / "d",
        tmp_path / "n",
    )
    defaults = config_from_args(parse_args(base))
    assert (defaults.response_delay, defaults.response_delay_file, defaults.not_ready_file) == (
        0.0,
        None,
        None,
    )
    for bad in ("-1", "nan", "inf", "x"):
        with pytest.raises(SystemExit):
            parse_args([*base, "--response-delay", bad])
