"""Print every registered mitmproxy patch with its target's current fingerprint; with
--markdown, the list of patch modules for docs/development.md (what each corrects, what it
replaces)."""

from __future__ import annotations

import sys

from kube_front_proxy.addon import K8sAuth
from kube_front_proxy.seam import TESTED_WITH, Patch, drift, fingerprint, original, patches


def _short(patch: Patch) -> str:
    owner = patch.owner
    name = getattr(owner, "__qualname__", None) or owner.__name__.rsplit(".", 1)[-1]
    return f"{name}.{patch.attribute}"


def markdown() -> str:
    """One line per patch module: the first paragraph of its docstring, then what it replaces
    and how many targets it pins."""
    by_module: dict[str, list[Patch]] = {}
    for patch in patches():
        by_module.setdefault(patch.module, []).append(patch)
    lines = []
    for module, registered in sorted(by_module.items()):
        doc = (sys.modules[module].__doc__ or "").split("\n\n", 1)[0]
        replaced = ", ".join(f"`{_short(p)}`" for p in registered if p.replaced)
        pinned = sum(not p.replaced for p in registered)
        path = module.removeprefix("kube_front_proxy.").replace(".", "/") + ".py"
        what = f"replaces {replaced}" if replaced else "replaces nothing"
        pins = f"; pins {pinned}" if pinned else ""
        lines.append(f"- `{path}`: {' '.join(doc.split())} ({what}{pins})")
    lines.append(f"\nFingerprints taken from mitmproxy {TESTED_WITH}.")
    return "\n".join(lines)


def main(args: list[str]) -> int:
    K8sAuth().install_patches()
    if args == ["--markdown"]:
        print(markdown())
        return 0
    for patch in patches():
        now = fingerprint(original(patch.owner, patch.attribute))
        mark = "ok     " if now == patch.fingerprint else "CHANGED"
        kind = "replaced" if patch.replaced else "pinned  "
        print(f"{mark} {kind} {now} {patch.target} ({patch.module.rsplit('.', 1)[-1]})")
    print(f"written against mitmproxy {TESTED_WITH}")
    return 1 if drift() else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
