"""`python -m tests.emulator`: flags, readiness signals, request log file, clean shutdown."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.emulator import EmulatorServer, load_request_log
from tests.emulator.__main__ import config_from_args, parse_args
from tests.support.emulator_pki import EmulatorPKI, request
from tests.support.processes import REPO

REQUIRED = ["--tls-cert-file", "c", "--tls-private-key-file", "k"]


def test_defaults_are_kubeadms_header_names() -> None:
    config = config_from_args(parse_args(REQUIRED))
    assert config.bind_address == "127.0.0.1"
    assert config.secure_port == 6443
    assert config.requestheader_username_headers == ("X-Remote-User",)
    assert config.requestheader_group_headers == ("X-Remote-Group",)
    assert config.requestheader_extra_headers_prefix == ("X-Remote-Extra-",)
    assert config.requestheader_uid_headers == ("X-Remote-Uid",)
    assert config.requestheader_allowed_names == ()
    assert config.anonymous_auth is True


def test_list_flags_behave_like_pflag_string_slices() -> None:
    args = parse_args([
        *REQUIRED,
        "--requestheader-username-headers", "X-A,X-B",
        "--requestheader-username-headers=X-C",
        "--requestheader-allowed-names=",
        "--requestheader-uid-headers", "",
        "--anonymous-auth=false",
    ])  # fmt: skip
    config = config_from_args(args)
    assert config.requestheader_username_headers == ("X-A", "X-B", "X-C")
    assert config.requestheader_allowed_names == ()
    assert config.requestheader_uid_headers == ()
    assert config.anonymous_auth is False


def test_cli_serves_and_logs(emulator_pki: EmulatorPKI, tmp_path: Path) -> None:
    pki = emulator_pki
    log, ready = tmp_path / "requests.jsonl", tmp_path / "ready"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.emulator", "--secure-port", "0",
         "--tls-cert-file", str(pki.path("apiserver.crt")),
         "--tls-private-key-file", str(pki.path("apiserver.key")),
         "--client-ca-file", str(pki.path("ca.crt")),
         "--requestheader-client-ca-file", str(pki.path("front-proxy-ca.crt")),
         "--requestheader-allowed-names", "front-proxy-client",
         "--request-log", str(log), "--ready-file", str(ready)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening on https://127.0.0.1:"), line
        url = line.split()[-1]
        assert ready.read_text().strip() == url
        port = int(url.rsplit(":", 1)[1])

        # Reuse the in-process request helper by pointing a stand-in at the subprocess.
        target = _Target("127.0.0.1", port)
        response = request(
            target,  # type: ignore[arg-type]
            pki, "GET", "/version", [("X-Remote-User", "ignored")],
        )  # fmt: skip
        assert response.status == 200
        [record] = load_request_log(log)
        assert record["path"] == "/version"
        assert record["authentication"]["authenticator"] == "anonymous"
        assert ["X-Remote-User", "ignored"] in record["headers"]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(timeout=10) == 0
        finally:
            process.kill()
    assert process.stderr is not None
    assert "GET /version 200 user=system:anonymous via=anonymous" in process.stderr.read()


class _Target:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port


def test_bad_configuration_exits_with_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.crt"
    result = subprocess.run(
        [sys.executable, "-m", "tests.emulator", "--secure-port", "0",
         "--tls-cert-file", str(missing), "--tls-private-key-file", str(missing)],
        cwd=REPO, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode != 0
    assert result.stderr.startswith("emulator: ")


def test_in_process_server_stops_promptly(emulator_pki: EmulatorPKI) -> None:
    from tests.support.emulator_pki import kubeadm_config

    server = EmulatorServer(kubeadm_config(emulator_pki))
    server.start()
    assert request(server, emulator_pki, "GET", "/healthz").body == b"ok"
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 3
    with pytest.raises(OSError):
        request(server, emulator_pki, "GET", "/healthz")
