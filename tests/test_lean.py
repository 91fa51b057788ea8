"""mitmproxy's default addons the proxy takes out (lean.py), and the options it then refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
from mitmproxy import options
from mitmproxy.tools.dump import DumpMaster
from mitmproxy.tools.web.master import WebMaster

from kube_front_proxy.lean import TAKEN_OUT, take_out

from .e2e import Emulator, start_proxy_for
from .support import free_port, proxy_config, start_proxy, write_yaml

# What operators use in mitmweb and for audits: must stay in the chain.
KEPT = {"Save", "SaveHar", "Export", "Comment", "Cut", "ClientPlayback", "CommandHistory",
        "Proxyserver", "ScriptLoader", "TlsConfig", "NextLayer", "Block", "Core"}  # fmt: skip


@pytest.mark.parametrize("master", [DumpMaster, WebMaster])
async def test_exactly_the_listed_addons_are_taken_out(master: type[DumpMaster]) -> None:
    m = master(options.Options())
    before = {type(a).__name__ for a in m.addons.chain}
    # The list matches this mitmproxy: every addon and every option named exists.
    assert set(TAKEN_OUT) <= before
    for names in TAKEN_OUT.values():
        for name in names:
            assert name in m.options, name
    removed = take_out(m.addons)
    after = {type(a).__name__ for a in m.addons.chain}
    assert sorted(removed) == sorted(TAKEN_OUT)
    assert after == before - set(TAKEN_OUT)
    assert after >= KEPT


@pytest.mark.parametrize(
    "setting", ["modify_headers=/~q/X-Remote-User/admin", "stickyauth=.", "map_local=|/|/etc"]
)
def test_options_of_taken_out_addons_are_refused(
    pki: Path, emulator: Emulator, tmp_path: Path, setting: str
) -> None:
    config = write_yaml(tmp_path / "config.yaml", proxy_config(pki, emulator.port, free_port()))
    process = start_proxy(config, tmp_path / "proxy.out", "--set", setting)
    assert process.proc.wait(30) != 0
    name = setting.split("=")[0]
    assert (f"kube-front-proxy: {name}: not available behind this proxy") in process.output()


def test_the_proxy_serves_with_them_taken_out(
    pki: Path, emulator: Emulator, tmp_path: Path
) -> None:
    # Turning one of their features off is no request for it, so it is accepted.
    proxy = start_proxy_for(pki, tmp_path, emulator.port, "--set", "termlog_verbosity=debug",
                            "--set", "onboarding=false")  # fmt: skip
    try:
        assert proxy.whoami()["username"] == "alice"
    finally:
        proxy.process.stop()
    log = proxy.process.output()
    assert "took out mitmproxy addons Browser, StripDnsHttpsRecords" in log
