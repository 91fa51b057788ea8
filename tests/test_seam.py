"""The one seam to mitmproxy's private code: every patch is fingerprinted and checked."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import shutil
import socket
import subprocess
import sys
import types
from pathlib import Path

import mitmproxy
import pytest
from mitmproxy.proxy.layers.http import HttpStream

from kube_front_proxy import seam
from kube_front_proxy.addon import K8sAuth
from tests.support.configs import proxy_config, write_yaml
from tests.support.harness import Emulator
from tests.support.processes import BIN, REPO, Process, free_port
from tests.support.users import write_users

PACKAGE = REPO / "addon" / "kube_front_proxy"


def _module_with(source: str, name: str = "fake_mitmproxy_part") -> types.ModuleType:
    module = types.ModuleType(name)
    path = REPO / "build" / f"{name}.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(source)
    code = compile(source, str(path), "exec")
    exec(code, module.__dict__)
    return module


def _forget(owner: types.ModuleType) -> None:
    """Take a test's patches of `owner` out of the registry."""
    for key in [k for k, p in seam._patches.items() if p.owner is owner]:
        del seam._patches[key]


def test_a_changed_target_is_reported_with_the_patch_name() -> None:
    before = _module_with("def target():\n    return 1\n")
    print_ = seam.fingerprint(before.target)
    seam.replace(before, "target", lambda: 2, fingerprint=print_, why="test patch")
    assert not [d for d in seam.drift() if "fake_mitmproxy_part" in d]
    after = _module_with("def target():\n    return 3\n")
    seam.replace(after, "target", lambda: 2, fingerprint=print_, why="test patch")
    found = [d for d in seam.drift() if "fake_mitmproxy_part" in d]
    assert found and "test patch" in found[0] and "target" in found[0]
    assert "refusing to start" in seam.drift_error(found)
    _forget(after)


def test_replace_twice_never_wraps_twice() -> None:
    module = _module_with("def target():\n    return 1\n")
    original = module.target
    first = seam.replace(module, "target", lambda: 2, fingerprint="x", why="t")
    second = seam.replace(module, "target", lambda: 3, fingerprint="x", why="t")
    assert first is original and second is original
    assert module.target() == 3
    _forget(module)


def test_the_docs_list_every_patch() -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "kube_front_proxy.seam", "--markdown"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    docs = (REPO / "docs" / "development.md").read_text()
    section = docs.split("<!-- seam patches: begin -->\n", 1)[1].split("<!-- seam patches")[0]
    assert section == listed, "docs/development.md: paste `kube_front_proxy.seam --markdown`"


def test_the_installed_mitmproxy_matches_every_patch() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kube_front_proxy.seam"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "CHANGED" not in result.stdout


def _patch_module(name: str) -> types.ModuleType:
    """A module named `name` whose install() replaces `target` in the module it is given."""
    return _module_with(
        "from kube_front_proxy import seam\n"
        "def install(owner):\n"
        f"    seam.replace(owner, 'target', lambda: {name!r}, fingerprint='x', why={name!r})\n",
        name,
    )


def test_a_second_patch_module_may_not_wrap_a_replaced_method() -> None:
    target = _module_with("def target():\n    return 1\n")
    first, second = _patch_module("first_patch"), _patch_module("second_patch")
    first.install(target)
    first.install(target)  # installing again is fine: the replacement is swapped
    with pytest.raises(seam.SeamError, match="replaced by first_patch already; second_patch"):
        second.install(target)
    assert target.target() == "first_patch"
    _forget(target)


def test_the_proxy_s_patches_cannot_be_wrapped_again() -> None:
    K8sAuth().install_patches()
    installed = HttpStream.handle_protocol_error
    with pytest.raises(seam.SeamError, match=r"upstream_failures already; tests\.test_seam"):
        seam.replace(HttpStream, "handle_protocol_error", lambda: None, fingerprint="", why="")
    assert HttpStream.handle_protocol_error is installed
    K8sAuth().install_patches()  # and the proxy's own install stays idempotent


def test_no_patch_of_mitmproxy_outside_the_seam() -> None:
    """No module outside seam/ assigns to something it imported from mitmproxy or its HTTP
    libraries (a patch there would escape the fingerprints and the start-up check)."""
    found = []
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text())
        imported = {
            (alias.asname or alias.name).split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom))
            and _third_party(node.module if isinstance(node, ast.ImportFrom) else None, node)
            for alias in node.names
        }
        for node in ast.walk(tree):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                targets = [node.target]
            elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setattr":
                targets = [ast.Attribute(value=node.args[0], attr="?")]
            for target in targets:
                if isinstance(target, ast.Attribute) and _root(target) in imported:
                    found.append(f"{path.name}:{node.lineno}")
    assert not found


PATCHED_LIBRARIES = ("mitmproxy", "h2", "h11", "hpack", "wsproto")


def _third_party(module: str | None, node: ast.Import | ast.ImportFrom) -> bool:
    if isinstance(node, ast.Import):
        return any(a.name.split(".")[0] in PATCHED_LIBRARIES for a in node.names)
    return bool(module) and str(module).split(".")[0] in PATCHED_LIBRARIES


def _root(node: ast.expr) -> str:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else ""


def test_patches_take_their_settings_from_the_policy_only() -> None:
    """Every patch module's install() takes no settings: what a patch decides by comes from
    seam.policy, which the addon sets (no setting kept by a module of its own)."""
    for info in pkgutil.iter_modules(seam.__path__):
        module = importlib.import_module(f"kube_front_proxy.seam.{info.name}")
        install = getattr(module, "install", None)
        if install is not None:
            assert not inspect.signature(install).parameters, info.name


# A target in the copied mitmproxy, an anchor in its source, and the patch that replaces it.
CHANGES = {
    "upstream_failures": (
        "proxy/layers/http/__init__.py",
        "    ) -> layer.CommandGenerator[None]:\n        is_client_error_but_we_already",
        "HttpStream.handle_protocol_error",
    ),
    "request_size": (
        "proxy/layers/http/_http1.py",
        "        if isinstance(event, events.DataReceived):\n            request_head = ",
        "_http1.Http1Server.read_headers",
    ),
}


def _mitmproxy_with_a_changed_target(root: Path, patch: str) -> str:
    """A copy of the installed mitmproxy, released as 12.3.99, in which the method `patch`
    replaces has one statement more; returns its version."""
    copy = root / "mitmproxy"
    shutil.copytree(
        Path(mitmproxy.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__")
    )
    _edit(copy / "version.py", 'VERSION = "12.3.1"', 'VERSION = "12.3.99"')
    path, anchor, _ = CHANGES[patch]
    first_line, rest = anchor.split("\n", 1)
    indent = rest[: len(rest) - len(rest.lstrip())]
    _edit(copy / path, anchor, f"{first_line}\n{indent}assert self\n{rest}")
    return "12.3.99"


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, path
    path.write_text(text.replace(old, new))


@pytest.mark.parametrize("patch", sorted(CHANGES))
def test_a_changed_mitmproxy_stops_start_up_naming_the_patch(
    pki: Path, emulator: Emulator, tmp_path: Path, patch: str
) -> None:
    version = _mitmproxy_with_a_changed_target(tmp_path / "site", patch)
    env = {"PYTHONPATH": str(tmp_path / "site")}
    port = free_port()
    write_users(tmp_path)
    config = write_yaml(tmp_path / "config.yaml", proxy_config(pki, emulator.port, port))
    args = [str(BIN / "mitmdump"), "-s", str(REPO / "addon" / "k8s_auth.py"),
            "--set", f"k8s_auth_config={config}"]  # fmt: skip
    refused = Process(args, tmp_path / "refused.out", env)
    try:
        assert refused.proc.wait(60) != 0
    finally:
        refused.stop()
    out = refused.output()
    assert f"mitmproxy {version} differs from the 12.3.1" in out
    assert "refusing to start" in out
    changed = [line for line in out.splitlines() if " changed (fingerprint" in line]
    assert len(changed) == 1, out
    assert f"{CHANGES[patch][2]} changed" in changed[0]
    assert f"kube_front_proxy.seam.{patch} was written against" in changed[0]
    assert not listening(port)

    overridden = Process(
        [*args, "--set", "k8s_auth_allow_mitmproxy_drift=true"], tmp_path / "ran.out", env
    )
    try:
        overridden.wait_for(rf"listening at 127\.0\.0\.1:{port}", timeout=60)
        assert (
            f"running on changed mitmproxy code: mitmproxy.proxy.layers.http.{CHANGES[patch][2]}"
            in overridden.output()
        )
    finally:
        overridden.stop()


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
