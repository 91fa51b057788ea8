"""Print every registered mitmproxy patch with its target's current fingerprint."""

from __future__ import annotations

from kube_front_proxy.addon import K8sAuth
from kube_front_proxy.seam import TESTED_WITH, drift, fingerprint, original, patches


def main() -> int:
    K8sAuth().install_patches()
    for patch in patches():
        now = fingerprint(original(patch.owner, patch.attribute))
        mark = "ok     " if now == patch.fingerprint else "CHANGED"
        kind = "replaced" if patch.replaced else "pinned  "
        print(f"{mark} {kind} {now} {patch.target}")
    print(f"written against mitmproxy {TESTED_WITH}")
    return 1 if drift() else 0


if __name__ == "__main__":
    raise SystemExit(main())
