"""kube-front-proxy-login without a proxy: what it reads from kubectl, its cache, its
kubeconfig, and that it needs nothing but the standard library."""

from __future__ import annotations

import argparse
import base64
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kube_front_proxy.login_plugin import cli
from kube_front_proxy.login_plugin.cli import (
    Credential,
    ExecInfo,
    LoginError,
    choose_cluster,
    read_exec_info,
)

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def exec_info(**cluster: object) -> dict[str, str]:
    info = {
        "kind": "ExecCredential",
        "apiVersion": "client.authentication.k8s.io/v1",
        "spec": {"interactive": True, "cluster": cluster},
    }
    return {"KUBERNETES_EXEC_INFO": json.dumps(info)}


def test_cluster_info_from_kubectl() -> None:
    ca = base64.b64encode(PEM.encode()).decode()
    info = read_exec_info(exec_info(server="https://proxy:8443", **{
        "certificate-authority-data": ca, "tls-server-name": "kube-front-proxy"}))  # fmt: skip
    assert info.interactive
    assert info.cluster == cli.Cluster("https://proxy:8443", PEM, "kube-front-proxy")
    # Flags win over kubectl's cluster info.
    chosen = choose_cluster(info, "https://other:9443", None)
    assert (chosen.server, chosen.ca_pem) == ("https://other:9443", PEM)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (exec_info(server="https://p", **{"insecure-skip-tls-verify": True}), "never sent"),
        (exec_info(server="https://p", **{"proxy-url": "http://x"}), "proxy-url"),
        (exec_info(server="http://p:8080"), "must be an https:// URL"),
        (exec_info(), "no server"),
        ({"KUBERNETES_EXEC_INFO": "{"}, "not JSON"),
        ({"KUBERNETES_EXEC_INFO": json.dumps({"apiVersion": "x/v9"})}, "unsupported"),
    ],
)
def test_refused_cluster_info(environ: dict[str, str], message: str) -> None:
    with pytest.raises(LoginError, match=message):
        choose_cluster(read_exec_info(environ), None, None)


def test_not_interactive_without_a_terminal() -> None:
    info = read_exec_info(exec_info(server="https://p"))
    info = ExecInfo(info.api_version, False, info.cluster)
    with pytest.raises(LoginError, match="set KUBE_FRONT_PROXY_PASSWORD"):
        cli.ask_password(choose_cluster(info, None, None), "alice", info)


def test_freshness_leaves_a_margin() -> None:
    eight_hours = Credential("t", expires_at=28_800, obtained_at=0)
    assert eight_hours.fresh(28_739) and not eight_hours.fresh(28_740)
    short = Credential("t", expires_at=10, obtained_at=0)  # a tenth of its life
    assert short.fresh(8.9) and not short.fresh(9)


def test_the_cache_is_private_and_per_server_and_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    credential = Credential("tok", 100.0, 1.0, ((12, 34),))
    path = cli.cache_file("https://a:1", "alice")
    cli.save_cached(path, "https://a:1", "alice", credential)
    assert path.parent == tmp_path / ".kube" / "cache" / "kube-front-proxy"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert cli.load_cached(path, "https://a:1", "alice") == credential
    assert cli.load_cached(path, "https://a:1", "bob") is None
    assert cli.cache_file("https://a:1", "bob") != path
    assert cli.cache_file("https://b:1", "alice") != path
    other = cli.cache_file("https://b:1", "bob")
    cli.save_cached(other, "https://b:1", "bob", credential)
    assert cli.forget_cached("https://a:1", None) == [path]
    assert cli.forget_cached(None, None) == [other]
    path.parent.joinpath("broken.json").write_text("{")
    assert cli.load_cached(path.parent / "broken.json", "https://a:1", "alice") is None


def test_the_kubeconfig_holds_the_plugin_and_no_secret(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_text(PEM)
    args = argparse.Namespace(
        server="https://proxy.example:8443",
        certificate_authority=str(tmp_path / "ca.crt"),
        username="al'ice: x",
        name="prod",
        command="/opt/kfp-login",
    )
    config = yaml.safe_load(cli.kubeconfig(args))
    ca = base64.b64encode(PEM.encode()).decode()
    cluster = {"server": "https://proxy.example:8443", "certificate-authority-data": ca}
    assert config["clusters"] == [{"name": "prod", "cluster": cluster}]
    plugin = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": "/opt/kfp-login",
        "args": ["--username", "al'ice: x"],
        "interactiveMode": "IfAvailable",
        "provideClusterInfo": True,
    }
    assert config["users"] == [{"name": "al'ice: x", "user": {"exec": plugin}}]
    assert config["current-context"] == "prod"


def test_only_the_standard_library_is_imported() -> None:
    code = (
        "import sys; before = set(sys.modules); import kube_front_proxy.login_plugin.cli; "
        "import kube_front_proxy.login_plugin.transport; "
        "print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.split()  # fmt: skip
    ours = {
        "kube_front_proxy",
        "kube_front_proxy.login_plugin",
        "kube_front_proxy.login_plugin.cli",
        "kube_front_proxy.login_plugin.transport",
    }
    stdlib = sys.stdlib_module_names
    foreign = [m for m in loaded if m not in ours and m.split(".")[0] not in stdlib]
    assert foreign == []
