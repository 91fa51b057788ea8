"""mitmproxy's default addons the proxy takes out (seam/default_addons.py), and the options it
then refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
from mitmproxy import addons, options
from mitmproxy.tools.dump import DumpMaster
from mitmproxy.tools.web.master import WebMaster

from kube_front_proxy.seam.default_addons import refused, take_out, taken_out
from tests.support.configs import proxy_config, write_yaml
from tests.support.harness import Emulator, start_proxy, start_proxy_for
from tests.support.processes import free_port

TAKEN_OUT = taken_out()

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


# mitmproxy 12.3.1's default addons that the allow-list takes out, with their options.
TAKEN_OUT_OF_12_3_1 = {
    "Browser": (),
    "StripDnsHttpsRecords": ("strip_ech",),
    "DnsResolver": ("dns_use_hosts_file", "dns_name_servers"),
    "Onboarding": ("onboarding", "onboarding_host"),
    "UpstreamAuth": ("upstream_auth",),
    "UpdateAltSvc": ("keep_alt_svc_header",),
    "ProxyAuth": ("proxyauth",),
    "ModifyHeaders": ("modify_headers",),
    "ModifyBody": ("modify_body",),
    "StickyAuth": ("stickyauth",),
    "StickyCookie": ("stickycookie",),
    "MapLocal": ("map_local",),
    "MapRemote": ("map_remote",),
    "ServerPlayback": ("server_replay", "server_replay_kill_extra", "server_replay_extra",
                       "server_replay_reuse", "server_replay_nopop", "server_replay_refresh",
                       "server_replay_use_headers", "server_replay_ignore_content",
                       "server_replay_ignore_params", "server_replay_ignore_payload_params",
                       "server_replay_ignore_host", "server_replay_ignore_port"),
    "AntiCache": ("anticache",),
    "AntiComp": ("anticomp",),
    "BlockList": ("block_list",),
}  # fmt: skip


def test_the_allow_list_takes_out_what_the_proxy_does_not_use() -> None:
    assert {k: set(v) for k, v in TAKEN_OUT.items()} == {
        k: set(v) for k, v in TAKEN_OUT_OF_12_3_1.items()
    }


class NewFeature:
    """A default addon a later mitmproxy might add."""

    def load(self, loader: object) -> None:
        loader.add_option("new_feature", bool, False, "Something new.")  # type: ignore[attr-defined]

    def request(self, flow: object) -> None:
        raise AssertionError("a new default addon must not see requests")


async def test_a_new_default_addon_is_taken_out(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = addons.default_addons
    monkeypatch.setattr(addons, "default_addons", lambda: [*defaults(), NewFeature()])
    m = DumpMaster(options.Options())
    assert "NewFeature" in take_out(m.addons)
    assert not any(isinstance(a, NewFeature) for a in m.addons.chain)
    m.options.update(new_feature=True)
    assert refused(m.options, ["new_feature"]) == ["new_feature"]


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
