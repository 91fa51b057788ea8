"""At start-up: read what the API server publishes about front-proxy trust, and warn.

GET CONFIGMAP_PATH as the proxy's own user (front-proxy headers over its certificate), from the
first API server that answers, then log each cluster_trust mismatch as a WARNING. It never
fails the proxy: an answer it cannot use is one WARNING saying why the check did not run.

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
from typing import Any

import h11
from cryptography import x509
from OpenSSL import SSL

from .cluster_trust import CONFIGMAP_PATH, TrustDataError, mismatches
from .identity import HeaderNames, IdentityHeaderWriter
from .tls import UpstreamTLS
from .upstream_request import Answer, get_request, own_identity, send
from .upstreams import Address

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
    "or --requestheader-username-headers does not list identity.username_headers[0] {name}; "
    "requests through the proxy will get 401 too"
)

TrustCheck = Callable[[Sequence[Address]], Coroutine[Any, Any, None]]


def trust_check(
    tls: UpstreamTLS,
    names: HeaderNames,
    writer: IdentityHeaderWriter,
    chain: Sequence[x509.Certificate],
) -> TrustCheck:
    """The check for these settings; run it with the servers to ask, in order of preference."""
    identity = own_identity(writer, CHECK_USER, None)
    request = get_request(tls, CONFIGMAP_PATH, "kube-front-proxy-cluster-trust", identity)

    async def check(servers: Sequence[Address]) -> None:
        try:
            await _check(servers)
        except Exception:
            # A task of its own: nothing else would ever see this.
            logger.exception("kube-front-proxy: internal error in the cluster trust check")

    async def _check(servers: Sequence[Address]) -> None:
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
                _report(address, answer, names, chain)
                return
        _could_not_run(failure)

    return check


def _report(
    address: Address, answer: Answer, names: HeaderNames, chain: Sequence[x509.Certificate]
) -> None:
    if answer.status == 401:
        _could_not_run(REFUSED_401.format(name=names.username[0]))
        return
    if answer.status == 403:
        _could_not_run(f"{_at(address)} answered 403 Forbidden: {GRANT}")
        return
    if answer.status != 200:
        _could_not_run(f"{_at(address)} answered {answer.status} to GET {CONFIGMAP_PATH}")
        return
    try:
        data = json.loads(answer.body)["data"]
        if not isinstance(data, dict):
            raise TrustDataError("its data is not a mapping")
        found = mismatches(data, names, chain)
    except (ValueError, KeyError, TypeError) as e:
        _could_not_run(f"{_at(address)}: not the ConfigMap kube-apiserver publishes: {e}")
        return
    for mismatch in found:
        logger.warning("kube-front-proxy: cluster trust: %s", mismatch)
    if not found:
        logger.info(
            "kube-front-proxy: cluster trust checked on %s: the identity headers and the "
            "front-proxy certificate match kube-system/extension-apiserver-authentication",
            _at(address),
        )


def _could_not_run(why: str) -> None:
    logger.warning("kube-front-proxy: the cluster trust check could not run: %s", why)


def _at(address: Address) -> str:
    return f"{address[0]}:{address[1]}"
