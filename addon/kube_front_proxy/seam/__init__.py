"""The one seam where kube-front-proxy patches mitmproxy's private code.

mitmproxy has no public hook for some of what this proxy must guarantee, so a few of its
private functions are replaced. Every such replacement goes through `replace()` here, and code
a patch copies or relies on without replacing it goes through `pin()`; each carries the
fingerprint of the mitmproxy code it was written against. At start-up the addon calls
`drift()` and refuses to run when any target changed (another mitmproxy release), naming the
patch, unless the operator sets `k8s_auth_allow_mitmproxy_drift`.

One wrapper per mitmproxy method: `replace()` refuses a second replacement of a target by
another patch module, so two wrappers can never stack in an order nobody wrote down; a patch
that needs several decisions at one place makes them in one wrapper, in an order in its code
(upstream_errors.py).

What the patches decide by (limits, the retry policy, the upstream token, the listener) is
one `Policy`, `seam.policy`: the addon builds it from its runtime and sets it with
`configure()` at start-up and on every reload, and each patch reads `seam.policy` when it
decides. No patch keeps a setting of its own.

`python -m kube_front_proxy.seam` prints every registered patch with its current fingerprint
(what to write after reviewing a patch against a new mitmproxy release).
"""

from __future__ import annotations

import hashlib
import inspect
import sys
import textwrap
from dataclasses import dataclass, field
from typing import Any, Protocol

from mitmproxy import http
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.version import VERSION

from kube_front_proxy.identity.service_account import TokenInjector
from kube_front_proxy.sessions.message_log import MessageLog
from kube_front_proxy.upstream.pool import Address

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
    module: str = ""  # the patch module that registered it

    @property
    def target(self) -> str:
        owner = self.owner
        name = getattr(owner, "__qualname__", None) or owner.__name__
        module = getattr(owner, "__module__", None)
        prefix = f"{module}." if module and inspect.isclass(owner) else ""
        return f"{prefix}{name}.{self.attribute}"


# Keyed by the owner itself (not its id, which a freed object's successor may reuse).
_originals: dict[tuple[Any, str], Any] = {}
# By (target, patch module): each module that replaces or relies on a target is named.
_patches: dict[tuple[str, str], Patch] = {}


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


class SeamError(RuntimeError):
    """A patch that would break the seam's rules (a second wrapper of one method)."""


def pin(owner: Any, attribute: str, *, fingerprint: str, why: str) -> Any:
    """Record that a patch relies on `owner.attribute` as it is; returns it."""
    target = original(owner, attribute)
    patch = Patch(owner, attribute, fingerprint, why, replaced=False, module=_caller())
    _patches.setdefault((patch.target, patch.module), patch)
    return target


def replace(owner: Any, attribute: str, replacement: Any, *, fingerprint: str, why: str) -> Any:
    """Replace `owner.attribute`; returns mitmproxy's original.

    Idempotent for the patch module that calls it (a second call swaps the replacement, never
    wraps twice); a call from another module raises SeamError: one wrapper per method."""
    target = original(owner, attribute)
    patch = Patch(owner, attribute, fingerprint, why, replaced=True, module=_caller())
    for earlier in _patches.values():
        if earlier.target == patch.target and earlier.replaced and earlier.module != patch.module:
            raise SeamError(
                f"{patch.target} is replaced by {earlier.module} already; {patch.module} may "
                "not wrap it too: make the decision in that one wrapper"
            )
    _patches[(patch.target, patch.module)] = patch
    setattr(owner, attribute, replacement)
    return target


def _caller() -> str:
    """The module that called pin() or replace()."""
    return str(sys._getframe(2).f_globals.get("__name__", "?"))


def patches() -> list[Patch]:
    return sorted(_patches.values(), key=lambda p: (p.target, p.module))


def drift() -> list[str]:
    """One line per registered target, and patch module relying on it, whose code is not what
    the patch was written against."""
    found = []
    for patch in patches():
        now = fingerprint(original(patch.owner, patch.attribute))
        if now != patch.fingerprint:
            found.append(
                f"{patch.target} changed (fingerprint {now}; {patch.module} was written "
                f"against {patch.fingerprint} in mitmproxy {TESTED_WITH}): {patch.why}"
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


class RetryPolicy(Protocol):
    """Which requests an API server failed or refused are sent again (routing.Router)."""

    def retry_target(self, flow: http.HTTPFlow, *, unsent: bool) -> Address | None: ...

    def resend_target(self, flow: http.HTTPFlow) -> Address | None: ...

    def ends_cleanly(self, flow: http.HTTPFlow) -> bool: ...


@dataclass(frozen=True)
class Policy:
    """Everything the patches decide by, in one immutable object.

    Built by the addon from its runtime (K8sAuth._configure_seam) at start-up and on every
    reload, and made current with `configure()`; a reload swaps the whole object, so a patch
    never sees half of one configuration. The defaults (before the addon configures the seam)
    refuse what they limit and retry nothing.
    """

    # request_size.py: the largest request head (431) and body (413).
    max_request_head_bytes: int = 1
    max_request_body_bytes: int = 1
    # websocket_relay.py: a larger message closes the session with 1009.
    max_websocket_message_bytes: int = 1
    # rapid_reset.py: each client connection's budget of RST_STREAM frames.
    http2_resets_per_minute: int = 1
    # h2_flow_control.py: what an HTTP/2 client that reads slowly makes the proxy hold of
    # responses, per stream and per connection (HTTP/2's default window until configured).
    http2_stream_buffer_bytes: int = 65535
    http2_connection_buffer_bytes: int = 65535
    # websocket_relay.py, dumper_lines.py: the per-session allowance of log lines.
    message_log: MessageLog = field(default_factory=MessageLog)
    # upstream_retry.py: None sends nothing again (mitmproxy's own handling).
    retry: RetryPolicy | None = None
    # upstream_token.py: the service-account token and the servers it may go to.
    upstream_token: TokenInjector = field(default_factory=TokenInjector)
    # listener.py: the proxy's own listener (TCP only), and whether it shares its port.
    listener: ProxyMode | None = None
    reuse_port: bool = False


policy = Policy()


def configure(new: Policy) -> None:
    """Make `new` the policy every patch decides by from now on."""
    global policy
    policy = new
