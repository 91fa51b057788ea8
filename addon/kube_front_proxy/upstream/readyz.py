"""The active health check: GET /readyz over the proxy's own mutual TLS.

The check says who it is in the identity headers, so it passes with anonymous auth off too:
kube-apiserver's bootstrap ClusterRole system:public-info-viewer lets every authenticated user
read /readyz (plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go).
"""

from __future__ import annotations

import asyncio

import h11
from OpenSSL import SSL

from kube_front_proxy.config.settings import HealthCheck
from kube_front_proxy.identity.headers import IdentityHeaderWriter
from kube_front_proxy.tls import UpstreamTLS
from kube_front_proxy.upstream.own_requests import get_request, own_identity, send
from kube_front_proxy.upstream.pool import Address, Probe

HEALTH_CHECK_USER = "system:kube-front-proxy:health-check"


def readyz_probe(
    tls: UpstreamTLS, check: HealthCheck, writer: IdentityHeaderWriter, token: bytes | None = None
) -> Probe:
    """A probe that is True when the server answers check.path with 200 within the timeout."""
    identity = own_identity(writer, HEALTH_CHECK_USER, token)
    request = get_request(tls, check.path, "kube-front-proxy-health-check", identity)

    async def probe(address: Address) -> bool:
        try:
            async with asyncio.timeout(check.timeout):
                return (await send(tls, address, request)).status == 200
        except (OSError, TimeoutError, SSL.Error, ValueError, h11.ProtocolError):
            return False

    return probe
