"""The one seam to mitmproxy's private code: every patch is fingerprinted and checked."""

from __future__ import annotations

import subprocess
import sys
import types

from kube_front_proxy import seam

from .conftest import REPO


def _module_with(source: str) -> types.ModuleType:
    module = types.ModuleType("fake_mitmproxy_part")
    path = REPO / "build" / "fake_mitmproxy_part.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(source)
    code = compile(source, str(path), "exec")
    exec(code, module.__dict__)
    return module


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
    seam._patches.pop(seam.Patch(after, "target", print_, "", True).target)


def test_replace_twice_never_wraps_twice() -> None:
    module = _module_with("def target():\n    return 1\n")
    original = module.target
    first = seam.replace(module, "target", lambda: 2, fingerprint="x", why="t")
    second = seam.replace(module, "target", lambda: 3, fingerprint="x", why="t")
    assert first is original and second is original
    assert module.target() == 3
    seam._patches.pop(seam.Patch(module, "target", "x", "", True).target)


def test_the_installed_mitmproxy_matches_every_patch() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kube_front_proxy.seam"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "CHANGED" not in result.stdout
