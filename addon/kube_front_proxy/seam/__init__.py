"""The one seam where kube-front-proxy patches mitmproxy's private code.

mitmproxy has no public hook for some of what this proxy must guarantee, so a few of its
private functions are replaced. Every such replacement goes through `replace()` here, and code
a patch copies or relies on without replacing it goes through `pin()`; each carries the
fingerprint of the mitmproxy code it was written against. At start-up the addon calls
`drift()` and refuses to run when any target changed (another mitmproxy release), naming the
patch, unless the operator sets `k8s_auth_allow_mitmproxy_drift`.

`python -m kube_front_proxy.seam` prints every registered patch with its current fingerprint
(what to write after reviewing a patch against a new mitmproxy release).
"""

from __future__ import annotations

import hashlib
import inspect
import textwrap
from dataclasses import dataclass
from typing import Any

from mitmproxy.version import VERSION

# The mitmproxy release every fingerprint below was taken from.
TESTED_WITH = "12.3.1"


@dataclass(frozen=True)
class Patch:
    """One piece of mitmproxy's private code this proxy replaces or depends on."""

    owner: Any  # a class or a module
    attribute: str
    fingerprint: str
    why: str
    replaced: bool

    @property
    def target(self) -> str:
        owner = self.owner
        name = getattr(owner, "__qualname__", None) or owner.__name__
        module = getattr(owner, "__module__", None)
        prefix = f"{module}." if module and inspect.isclass(owner) else ""
        return f"{prefix}{name}.{self.attribute}"


# Keyed by the owner itself (not its id, which a freed object's successor may reuse).
_originals: dict[tuple[Any, str], Any] = {}
_patches: dict[str, Patch] = {}


def fingerprint(obj: Any) -> str:
    """A short hash of an object's source (a function, method or class)."""
    source = textwrap.dedent(inspect.getsource(obj))
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def original(owner: Any, attribute: str) -> Any:
    """mitmproxy's own `owner.attribute`, before any replacement."""
    key = (owner, attribute)
    if key not in _originals:
        _originals[key] = getattr(owner, attribute)
    return _originals[key]


def pin(owner: Any, attribute: str, *, fingerprint: str, why: str) -> Any:
    """Record that a patch relies on `owner.attribute` as it is; returns it."""
    target = original(owner, attribute)
    patch = Patch(owner, attribute, fingerprint, why, replaced=False)
    _patches.setdefault(patch.target, patch)
    return target


def replace(owner: Any, attribute: str, replacement: Any, *, fingerprint: str, why: str) -> Any:
    """Replace `owner.attribute` (idempotent: a second call swaps the replacement, never wraps
    twice); returns mitmproxy's original."""
    target = original(owner, attribute)
    patch = Patch(owner, attribute, fingerprint, why, replaced=True)
    _patches[patch.target] = patch
    setattr(owner, attribute, replacement)
    return target


def patches() -> list[Patch]:
    return sorted(_patches.values(), key=lambda p: p.target)


def drift() -> list[str]:
    """One line per registered target whose code is not what its patch was written against."""
    found = []
    for patch in patches():
        now = fingerprint(original(patch.owner, patch.attribute))
        if now != patch.fingerprint:
            found.append(
                f"{patch.target} changed (fingerprint {now}, patch written against "
                f"{patch.fingerprint} in mitmproxy {TESTED_WITH}): {patch.why}"
            )
    return found


def drift_error(found: list[str]) -> str:
    return (
        f"kube-front-proxy patches mitmproxy's private code, and mitmproxy {VERSION} differs "
        f"from the {TESTED_WITH} it was checked against; refusing to start:\n  "
        + "\n  ".join(found)
        + "\nInstall the locked mitmproxy release, or review the patches and set "
        "k8s_auth_allow_mitmproxy_drift=true to run anyway."
    )
