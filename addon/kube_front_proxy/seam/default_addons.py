"""mitmproxy's default addons the proxy keeps; every other one is taken out of the hook chain.

mitmproxy offers every event of every flow to every addon (a getattr and a context manager per
addon per event), so with about 30 default addons that dispatch alone took a fifth of the
proxy's CPU. Most are of no use to an authenticating reverse proxy, and some would undo its
guarantees: traffic rewriting after the proxy vouched for a request (`ModifyHeaders` could add
an X-Remote-User after the strip, `StickyAuth` replays one user's Authorization onto others'
requests, `MapLocal`/`MapRemote`/`ServerPlayback` answer or redirect without the API server),
features of other modes (DNS, onboarding, an upstream proxy's auth, HTTP/3 alt-svc, mitmproxy's
own proxy login, which this proxy replaces).

So the default addons (`mitmproxy.addons.default_addons()`, pinned: a new mitmproxy that adds
one stops start-up until it is reviewed) are filtered by an allow-list, `KEPT`: an addon a later
mitmproxy adds is taken out, not kept unnoticed. The addons mitmdump and mitmweb add themselves
(their output, the web UI, intercept, the flow view) and this proxy's own stay.

The chain is filtered rather than each addon remove()d: remove() runs an addon's `done` hook
synchronously, which fails for async ones, and these need no shutdown. mitmproxy cannot
undeclare an option, so the options of the addons taken out stay; setting one to ask for its
feature is refused with an error rather than silently ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mitmproxy import addons, optmanager
from mitmproxy.addonmanager import AddonManager

from kube_front_proxy.seam import pin

# The default addons kept (class name -> what needs it).
KEPT = {
    "Core": "mitmproxy's own options and commands",
    "Proxyserver": "the listener and its connections",
    "ScriptLoader": "loads this proxy (-s addon/k8s_auth.py)",
    "NextLayer": "each connection's layers (client/tls_only.py decides the first)",
    "TlsConfig": "TLS on both sides (tls.py hands it finished connections)",
    "DisableH2C": "refuses cleartext HTTP/2 upgrades",
    "Block": "refuses clients by address (block_global, block_private)",
    "Save": "flows saved with -w for audits",
    "SaveHar": "HAR export (mitmweb, audits)",
    "Export": "mitmweb's export of a flow",
    "Comment": "flow comments (observe/flow_labels.py names the user there)",
    "Cut": "the cut.* commands (audits)",
    "ClientPlayback": "mitmweb's replay (a replay logs in again)",
    "CommandHistory": "mitmweb's command bar",
}


class _OptionNames:
    """A Loader that only notes the names of the options an addon declares."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def add_option(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.names.append(name)

    def add_command(self, *args: Any, **kwargs: Any) -> None:
        pass


def _options(addon: Any) -> tuple[str, ...]:
    loader = _OptionNames()
    if hasattr(addon, "load"):
        addon.load(loader)
    return tuple(loader.names)


def taken_out() -> dict[str, tuple[str, ...]]:
    """Class name of each default addon taken out -> the options it declares."""
    return {
        type(addon).__name__: _options(addon)
        for addon in addons.default_addons()
        if type(addon).__name__ not in KEPT
    }


def install() -> None:
    """Idempotent."""
    pin(
        addons,
        "default_addons",
        fingerprint="7eb18893c70be9a4",
        why="the default addons, filtered by the allow-list KEPT (seam/default_addons.py)",
    )
    dispatch = {"trigger_event": "58789e378391cb37", "trigger": "b4dcbf78f70ad709"}
    for method, fingerprint in dispatch.items():
        pin(
            AddonManager,
            method,
            fingerprint=fingerprint,
            why="events go to the addons in `chain`, which take_out filters",
        )


def take_out(manager: AddonManager) -> list[str]:
    """Remove the default addons not kept from the chain of events; returns their names."""
    default = {type(a) for a in addons.default_addons()}
    removed = [a for a in manager.chain if type(a) in default and type(a).__name__ not in KEPT]
    gone = {id(a) for a in removed}
    manager.chain = [a for a in manager.chain if id(a) not in gone]
    return [type(a).__name__ for a in removed]


def refused(options: optmanager.OptManager, names: Iterable[str]) -> list[str]:
    """The options among names that belong to a removed addon and ask for its feature: changed
    from their default to a value that turns something on (`onboarding=false` is fine)."""
    owned = {name for names in taken_out().values() for name in names}
    return sorted(
        name
        for name in names
        if name in owned and options.has_changed(name) and getattr(options, name)
    )
