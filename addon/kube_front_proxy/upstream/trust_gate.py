"""The proxy serves only once the API server is known to read identity the way it is written.

With `upstream.check_cluster_trust` on (the default, front-proxy mode), the proxy does not
serve (every request gets a 503 Status, and metrics' /readyz a 503 saying why) until the
cluster trust check (upstream/trust_check.py) has read kube-system/extension-apiserver-
authentication and found nothing that would cost users their identity. A check that could not
run (the API server unreachable, the ConfigMap forbidden, an answer that is not the ConfigMap)
refuses the same way: the proxy cannot know what the API server reads, so it vouches for no
one. The reasons are logged as WARNINGs: mitmproxy exits when an ERROR is logged while it
starts, and the first check runs then (before the listener opens, so that no request comes
before the verdict); the refusal itself, every request a 503, is what the operator sees.

The check is repeated every RETRY_SECONDS until it passes, so a fix on either side (the API
server's flags, a RoleBinding, the proxy's config, reloaded) ends the refusal without a
restart. Once passed, the check stops; a reload that changes what it compares runs it again,
and the proxy keeps serving meanwhile unless the new verdict says otherwise.

Whatever the verdict, the names the API server reads are stripped from client requests from
then on (IdentityHeaderWriter.strip_also), listed in the config or not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from kube_front_proxy.identity.headers import HeaderNames
from kube_front_proxy.upstream.pool import Address
from kube_front_proxy.upstream.trust_check import TrustCheck, Verdict

logger = logging.getLogger("kube_front_proxy")

RETRY_SECONDS = 10.0
NOT_CHECKED = "the cluster trust check has not run yet"
# What clients are told: the reasons name header names and certificates, for the operator only.
CLIENT_MESSAGE = (
    "the proxy is not serving: it cannot confirm that the Kubernetes API server reads the "
    "identity it sends (its operator sees why in its log and at /readyz)"
)
NOT_SERVING = (
    "kube-front-proxy: not serving: every request gets 503 until the cluster trust check "
    f"passes (retried every {RETRY_SECONDS:.0f} s; upstream.check_cluster_trust: false turns "
    "the check off)"
)


class TrustGate:
    """Why the proxy refuses every request ("" while it serves), from the check's verdicts."""

    def __init__(self) -> None:
        self.refusal = ""
        self.server_names: HeaderNames | None = None
        self._notes: tuple[str, ...] = ()

    def wait_for_check(self) -> None:
        self.refusal = NOT_CHECKED

    def open(self) -> None:
        self.refusal = ""

    def record(self, verdict: Verdict) -> None:
        """Take a verdict; log what changed (a retry that finds the same is quiet)."""
        if verdict.server_names is not None:
            self.server_names = verdict.server_names
        if verdict.notes != self._notes:
            for note in verdict.notes:
                logger.warning("kube-front-proxy: %s", note)
            self._notes = verdict.notes
        if verdict.problems:
            refusal = "\n".join(verdict.problems)
            if refusal != self.refusal:
                for problem in verdict.problems:
                    logger.warning("kube-front-proxy: %s", problem)
                logger.warning(NOT_SERVING)
            self.refusal = refusal
            return
        was_refusing = bool(self.refusal) and self.refusal != NOT_CHECKED
        self.refusal = ""
        if verdict.notes:
            logger.info(
                "kube-front-proxy: cluster trust checked on %s: nothing above costs users "
                "their identity; serving",
                verdict.checked_on,
            )
        else:
            logger.info(
                "kube-front-proxy: cluster trust checked on %s: the identity headers and the "
                "front-proxy certificate match kube-system/extension-apiserver-authentication",
                verdict.checked_on,
            )
        if was_refusing:
            logger.warning("kube-front-proxy: the cluster trust check passed: serving again")


async def check_until_passed(
    check: TrustCheck,
    servers: Sequence[Address],
    gate: TrustGate,
    learned: Callable[[HeaderNames], None],
    first_delay: float = 0.0,
) -> None:
    """Run the check (after first_delay), every RETRY_SECONDS until it passes."""
    await asyncio.sleep(first_delay)
    while not await check_once(check, servers, gate, learned):
        await asyncio.sleep(RETRY_SECONDS)


async def check_once(
    check: TrustCheck,
    servers: Sequence[Address],
    gate: TrustGate,
    learned: Callable[[HeaderNames], None],
) -> bool:
    """One run: the gate takes the verdict, `learned` the names the API server reads."""
    verdict = await check(servers)
    if verdict.server_names is not None:
        learned(verdict.server_names)
    gate.record(verdict)
    return not verdict.problems
