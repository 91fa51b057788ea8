"""mitmproxy default addons this proxy takes out of the hook chain, and why.

mitmproxy offers every event of every flow to every addon (a getattr and a context manager per
addon per event), so with about 30 default addons that dispatch alone took a fifth of the
proxy's CPU. The addons below are of no use to an authenticating reverse proxy, and some would
undo its guarantees:

- for other modes: DNS (`DnsResolver`, `StripDnsHttpsRecords`), forward-proxy certificate
  onboarding (`Onboarding`, which answers requests for mitm.it itself), an upstream proxy's auth
  (`UpstreamAuth`), HTTP/3 alt-svc rewriting (`UpdateAltSvc`; the listener is TCP only),
  opening a browser (`Browser`), mitmproxy's own proxy login (`ProxyAuth`, which this replaces);
- traffic rewriting after the proxy vouched for a request: `ModifyHeaders` could add an
  X-Remote-User after the strip, `StickyAuth` replays one user's Authorization onto others'
  requests, `MapLocal`/`MapRemote`/`ServerPlayback` answer or redirect without the API server,
  `ModifyBody`, `AntiCache`, `AntiComp`, `StickyCookie` and `BlockList` change what either side
  sent.

What mitmweb and audits use stays: the flow view, saving and HAR, export, comments, cut,
client replay, command history. mitmproxy cannot undeclare an option, so the options of the
addons taken out stay; setting one is refused with an error rather than silently ignored.
"""

from __future__ import annotations

from collections.abc import Iterable

from mitmproxy import optmanager
from mitmproxy.addonmanager import AddonManager

# Class name of each default addon taken out -> the options it declares.
TAKEN_OUT: dict[str, tuple[str, ...]] = {
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
_OPTIONS = frozenset(name for names in TAKEN_OUT.values() for name in names)


def take_out(manager: AddonManager) -> list[str]:
    """Remove the addons above from the chain of events; returns the names removed.

    The chain is filtered rather than each addon remove()d: remove() runs an addon's `done`
    hook synchronously, which fails for async ones, and these need no shutdown.
    """
    removed = [type(a).__name__ for a in manager.chain if type(a).__name__ in TAKEN_OUT]
    manager.chain = [a for a in manager.chain if type(a).__name__ not in TAKEN_OUT]
    return removed


def refused(options: optmanager.OptManager, names: Iterable[str]) -> list[str]:
    """The options among names that belong to a removed addon and ask for its feature: changed
    from their default to a value that turns something on (`onboarding=false` is fine)."""
    return sorted(
        name
        for name in names
        if name in _OPTIONS and options.has_changed(name) and getattr(options, name)
    )
