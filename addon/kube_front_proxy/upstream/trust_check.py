"""Read what the API server publishes about front-proxy trust, and judge the proxy's settings.

GET CONFIGMAP_PATH as the proxy's own user (front-proxy headers over its certificate), from the
first API server that answers, and compare (upstream/trust.py). The result is a Verdict:
problems (why the proxy must not serve: a mismatch that would cost users their identity, or
why the check could not run), notes (differences that change nothing), and the header names
the API server reads. upstream/trust_gate.py acts on it.

The user needs kubeadm's Role kube-system/extension-apiserver-authentication-reader (get on
that one ConfigMap, plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go), bound with
`kubectl -n kube-system create rolebinding kube-front-proxy-cluster-trust
--role=extension-apiserver-authentication-reader --user=system:kube-front-proxy:cluster-trust`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import h11
from cryptography import x509
from OpenSSL import SSL

from kube_front_proxy.identity.headers import HeaderNames, IdentityHeaderWriter
from kube_front_proxy.tls import UpstreamTLS
from kube_front_proxy.upstream.own_requests import Answer, get_request, own_identity, send
from kube_front_proxy.upstream.pool import Address
from kube_front_proxy.upstream.trust import CONFIGMAP_PATH, TrustDataError, mismatches

logger = logging.getLogger("kube_front_proxy")

CHECK_USER = "system:kube-front-proxy:cluster-trust"
TIMEOUT_SECONDS = 10
GRANT = (
    f"bind the Role kube-system/extension-apiserver-authentication-reader to user {CHECK_USER}, "
    "or set upstream.check_cluster_trust: false"
)
REFUSED_401 = (
    "the API server did not take the proxy for a front proxy (401): upstream.client_cert is not "
    "signed by its --requestheader-client-ca-file, its CN is not in --requestheader-allowed-names, "
    "or --requestheader-username-headers does not list identity.username_headers[0] {name}"
)


@dataclass(frozen=True)
class Verdict:
    """One run of the check."""

    problems: tuple[str, ...] = ()  # why the proxy must not serve
    notes: tuple[str, ...] = ()  # differences that change nothing
    server_names: HeaderNames | None = None  # what the API server reads, once read
    checked_on: str = ""  # the API server that answered


def could_not_run(why: str) -> Verdict:
    return Verdict(problems=(f"the cluster trust check could not run: {why}",))


TrustCheck = Callable[[Sequence[Address]], Coroutine[Any, Any, Verdict]]


def trust_check(
    tls: UpstreamTLS,
    names: HeaderNames,
    writer: IdentityHeaderWriter,
    chain: Sequence[x509.Certificate],
) -> TrustCheck:
    """The check for these settings; run it with the servers to ask, in order of preference."""
    identity = own_identity(writer, CHECK_USER, None)
    request = get_request(tls, CONFIGMAP_PATH, "kube-front-proxy-cluster-trust", identity)

    async def check(servers: Sequence[Address]) -> Verdict:
        try:
            return await _check(servers)
        except Exception:
            logger.exception("kube-front-proxy: internal error in the cluster trust check")
            return could_not_run("internal error (see the traceback above)")

    async def _check(servers: Sequence[Address]) -> Verdict:
        failure = "no API server is configured"
        for address in servers:
            try:
                async with asyncio.timeout(TIMEOUT_SECONDS):
                    answer = await send(tls, address, request)
            except TimeoutError:
                failure = f"{_at(address)}: no answer within {TIMEOUT_SECONDS} s"
            except (OSError, SSL.Error, ValueError, h11.ProtocolError) as e:
                failure = f"{_at(address)}: {type(e).__name__}: {e}"
            else:
                return _judge(address, answer, names, chain)
        return could_not_run(failure)

    return check


def _judge(
    address: Address, answer: Answer, names: HeaderNames, chain: Sequence[x509.Certificate]
) -> Verdict:
    if answer.status == 401:
        return could_not_run(REFUSED_401.format(name=names.username[0]))
    if answer.status == 403:
        return could_not_run(f"{_at(address)} answered 403 Forbidden: {GRANT}")
    if answer.status != 200:
        return could_not_run(f"{_at(address)} answered {answer.status} to GET {CONFIGMAP_PATH}")
    try:
        data = json.loads(answer.body)["data"]
        if not isinstance(data, dict):
            raise TrustDataError("its data is not a mapping")
        found = mismatches(data, names, chain)
    except (ValueError, KeyError, TypeError) as e:
        return could_not_run(f"{_at(address)}: not the ConfigMap kube-apiserver publishes: {e}")
    return Verdict(
        problems=tuple(f"cluster trust: {p}" for p in found.problems),
        notes=tuple(f"cluster trust: {n}" for n in found.notes),
        server_names=found.server_names,
        checked_on=_at(address),
    )


def _at(address: Address) -> str:
    return f"{address[0]}:{address[1]}"
