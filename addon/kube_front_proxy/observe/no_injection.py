"""mitmproxy's inject.* commands are taken out.

`inject.websocket` and `inject.tcp` write bytes of the caller's choosing into a live upgraded
session, such as a logged-in user's `kubectl exec` or `port-forward`, over the connection the
proxy vouched for: anyone who can call mitmweb's command API (`POST /commands/<name>`) would
type into another user's shell. (`inject.udp` is for UDP flows, which this proxy does not
carry.) They are removed from mitmproxy's command registry when the proxy starts running, so a
call is an unknown command.
"""

from __future__ import annotations

from mitmproxy.command import CommandManager

COMMANDS = ("inject.websocket", "inject.tcp", "inject.udp")


def take_out(manager: CommandManager) -> list[str]:
    """Remove the injection commands; returns the names removed."""
    return [name for name in COMMANDS if manager.commands.pop(name, None) is not None]
