"""Scale-out on one machine: proxy processes with listen.reuse_port share one port.

Each process prints one line per flow it served (mitmdump's default flow output), so its own
log file tells how many of the requests it answered.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kube_front_proxy.config.errors import ConfigError
from kube_front_proxy.config.runtime import build_runtime
from kube_front_proxy.config.settings import load_settings
from tests.support.configs import proxy_config, write_yaml
from tests.support.harness import Emulator, Proxy, start_proxy, start_proxy_for
from tests.support.processes import Process, listening_ports
from tests.support.users import basic_header, password_of, write_users
from tests.support.waiting import wait_until

ALICE = [basic_header("alice", password_of("alice"))]


def served(proxy: Process, emulator: Emulator, path: str) -> int:
    return proxy.output().count(f"GET https://127.0.0.1:{emulator.port}{path}\n")


def wait_served(proxies: list[Process], emulator: Emulator, path: str, total: int) -> list[int]:
    """Flow lines per process, once they add up to `total` (the log is written after the reply)."""

    def counts() -> list[int]:
        return [served(p, emulator, path) for p in proxies]

    wait_until(lambda: sum(counts()) >= total, 10, lambda: f"{counts()} of {total}")
    return counts()


def test_two_processes_share_the_port_and_one_survives_the_other(
    pki: Path, emulator: Emulator, tmp_path: Path
) -> None:
    first = start_proxy_for(pki, tmp_path, emulator.port, listen={"reuse_port": True})
    # The same config file, as N copies of one systemd unit or one container image would use.
    second = Proxy(start_proxy(first.config, tmp_path / "second.out"), first.port, first.config,
                   pki, tmp_path)  # fmt: skip
    try:
        second.process.wait_for(rf"listening at 127\.0\.0\.1:{first.port}")
        pids = [first.process.proc.pid, second.process.proc.pid]
        assert [listening_ports(pid) for pid in pids] == [{first.port}, {first.port}]
        # Shared means TCP only: mitmproxy's HTTP/3 socket on the same port cannot be shared.
        udp = subprocess.run(["ss", "-Hulnp"], capture_output=True, text=True, check=True).stdout
        assert not [line for line in udp.splitlines() if f":{first.port} " in line]
        pods = "/api/v1/namespaces/default/pods"
        # Each request is a new connection: the kernel picks a process per connection.
        statuses = [first.raw("GET", pods, ALICE)[0] for _ in range(40)]
        assert statuses == [200] * 40
        counts = wait_served([first.process, second.process], emulator, pods, 40)
        assert sum(counts) == 40
        assert min(counts) > 0, counts
        assert len([r for r in emulator.requests() if r["path"] == pods]) == 40

        first.process.stop()
        statuses = [second.raw("GET", "/version", ALICE)[0] for _ in range(10)]
        assert statuses == [200] * 10
        assert wait_served([second.process], emulator, "/version", 10) == [10]
        assert second.whoami()["username"] == "alice"  # real kubectl, HTTP/2
    finally:
        first.process.stop()
        second.process.stop()


def test_without_reuse_port_a_second_process_cannot_listen(
    pki: Path, emulator: Emulator, tmp_path: Path
) -> None:
    first = start_proxy_for(pki, tmp_path, emulator.port)
    second = start_proxy(first.config, tmp_path / "second.out")
    try:
        assert second.proc.wait(30) != 0
        output = second.output()
        assert f"cannot listen on 127.0.0.1:{first.port}" in output
        assert "address already in use" in output.lower()
        assert first.whoami()["username"] == "alice"
    finally:
        second.stop()
        first.process.stop()


def test_reuse_port_is_off_by_default_and_needs_a_restart_to_change(
    pki: Path, tmp_path: Path
) -> None:
    write_users(tmp_path)
    config = write_yaml(tmp_path / "config.yaml", proxy_config(pki, 6443, 8443))
    runtime = build_runtime(config)
    assert runtime.settings.reuse_port is False
    write_yaml(config, proxy_config(pki, 6443, 8443, listen={"reuse_port": True}))
    shared = build_runtime(config)
    assert shared.settings.reuse_port is True
    # The reloader keeps the old configuration when this differs.
    assert shared.needs_restart_to_change != runtime.needs_restart_to_change


def test_reuse_port_must_be_a_boolean(tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "config.yaml", {"listen": {"reuse_port": "yes"}})
    with pytest.raises(ConfigError) as error:
        load_settings(config)
    line = f"{config}: listen.reuse_port: must be true or false, not a string"
    assert line in str(error.value).splitlines()
