"""Live reload: valid changes take effect, broken ones keep the last good configuration."""

from __future__ import annotations

import http.client
import logging
import shutil
from pathlib import Path

import pytest

import devpki
from kube_front_proxy.config.reload import Reloader
from kube_front_proxy.config.runtime import Runtime, build_runtime
from tests.support.configs import htpasswd_add, proxy_config, write_yaml
from tests.support.harness import Emulator, Proxy, start_emulator, start_proxy_for
from tests.support.users import ALICE, basic_header, password_of
from tests.support.waiting import wait_until


class Holder:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def use(self, runtime: Runtime) -> None:
        self.runtime = runtime


@pytest.fixture
def holder(tmp_path: Path, pki: Path) -> Holder:
    htpasswd_add(tmp_path / "htpasswd", "alice", "pw", "apr1")
    write_yaml(tmp_path / "users.yaml", {"users": {"alice": {"groups": ["dev"]}}})
    write_yaml(tmp_path / "config.yaml", proxy_config(pki, 6443, 8443))
    return Holder(build_runtime(tmp_path / "config.yaml"))


def reloader(holder: Holder) -> Reloader:
    return Reloader(lambda: holder.runtime, holder.use)


async def test_unchanged_files_do_nothing(holder: Holder) -> None:
    before = holder.runtime
    assert not await reloader(holder).check()
    assert holder.runtime is before


async def test_valid_change_takes_effect(holder: Holder, tmp_path: Path) -> None:
    watch = reloader(holder)
    write_yaml(tmp_path / "users.yaml", {"users": {"alice": {"groups": ["dev", "ops"]}}})
    assert await watch.check()
    assert holder.runtime.login.identities["alice"].groups == ("dev", "ops")


async def test_broken_change_keeps_the_last_good_config(
    holder: Holder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    watch = reloader(holder)
    good = holder.runtime
    write_yaml(tmp_path / "users.yaml", {"users": {"alice": {"groups": ["dev\nX-Evil: 1"]}}})
    with caplog.at_level(logging.ERROR):
        assert not await watch.check()
    assert holder.runtime is good
    assert f"{tmp_path / 'users.yaml'}: users.alice.groups[0]: contains a control" in caplog.text
    # Fixed again: taken.
    write_yaml(tmp_path / "users.yaml", {"users": {"alice": {"groups": ["fixed"]}}})
    assert await watch.check()
    assert holder.runtime.login.identities["alice"].groups == ("fixed",)


async def test_listener_changes_need_a_restart(
    holder: Holder, tmp_path: Path, pki: Path, caplog: pytest.LogCaptureFixture
) -> None:
    watch = reloader(holder)
    good = holder.runtime
    write_yaml(tmp_path / "config.yaml", proxy_config(pki, 6443, 9443))
    with caplog.at_level(logging.ERROR):
        assert not await watch.check()
    assert holder.runtime is good and "need a restart" in caplog.text


async def test_password_change_voids_remembered_logins(holder: Holder, tmp_path: Path) -> None:
    watch = reloader(holder)
    assert (await holder.runtime.login.authenticate([basic_header("alice", "pw")[1]], "c")).identity
    (tmp_path / "htpasswd").unlink()
    htpasswd_add(tmp_path / "htpasswd", "alice", "new-pw", "sha512")
    assert await watch.check()
    login = holder.runtime.login
    assert login.cache is not None
    assert (await login.authenticate([basic_header("alice", "pw")[1]], "c")).identity is None
    assert (await login.authenticate([basic_header("alice", "new-pw")[1]], "c")).identity


def test_reload_end_to_end(pki: Path, tmp_path: Path) -> None:
    """Users, then a broken file, then the front-proxy client certificate, with a proxy running."""
    emulator = start_emulator(
        pki, tmp_path / "emulator", "--requestheader-allowed-names", "rotated-client"
    )
    client_cert = tmp_path / "fp-client.crt"
    client_key = tmp_path / "fp-client.key"
    shutil.copy(pki / "front-proxy-client.crt", client_cert)
    shutil.copy(pki / "front-proxy-client.key", client_key)
    proxy = start_proxy_for(
        pki, tmp_path / "proxy", emulator.port,
        upstream={"client_cert": str(client_cert), "client_key": str(client_key)},
        reload={"interval_seconds": 1},
    )  # fmt: skip
    users = tmp_path / "proxy" / "users.yaml"
    context = proxy.context()
    kept = http.client.HTTPSConnection("127.0.0.1", proxy.port, context=context, timeout=10)
    auth = dict([basic_header("alice", password_of("alice"))])
    try:
        kept.request("GET", "/version", headers=auth)
        assert kept.getresponse().read()

        write_yaml(users, {"users": {"alice": {**ALICE, "groups": ["reloaded"]}}})
        wait_until(lambda: "reloaded" in proxy.whoami()["groups"], 15, interval=0.3)

        write_yaml(users, {"users": {"alice": {"groups": "not-a-list"}}})
        wait_until(lambda: "reload refused" in proxy.process.output(), 15)
        assert f"{users}: users.alice.groups: must be a list" in proxy.process.output()
        assert proxy.whoami()["groups"] == ["reloaded", "system:authenticated"]

        # Every reload reads every file: repair users.yaml, or nothing else can be taken.
        write_yaml(users, {"users": {"alice": ALICE}})
        # kubeadm renews front-proxy-client yearly: a new certificate, no restart.
        ca = devpki.load(pki / "front-proxy-ca.crt", pki / "front-proxy-ca.key")
        rotated = devpki.issue(ca, "rotated-client")
        client_key.write_bytes(rotated.key_pem())
        client_cert.write_bytes(rotated.cert_pem())
        wait_until(lambda: emulator_saw_cn(emulator, proxy, "rotated-client"), 15, interval=0.3)

        # The connection opened before all this still works.
        kept.request("GET", "/version", headers=auth)
        assert kept.getresponse().status == 200
    finally:
        kept.close()
        proxy.process.stop()
        emulator.process.stop()


def emulator_saw_cn(emulator: Emulator, proxy: Proxy, cn: str) -> bool:
    proxy.whoami()
    return bool(emulator.requests()[-1]["peer_cert_cn"] == cn)
