"""An emulated kube-apiserver for tests and demos (no real apiserver binary is available).

It implements kube-apiserver's front-proxy ("requestheader") authentication exactly, the x509
client-certificate and static bearer-token authenticators, anonymous access, impersonation, ABAC
authorization, and enough API for kubectl 1.32: discovery, /version, health checks, pods and
namespaces (with Table output), SelfSubjectReview (`kubectl auth whoami`), the
extension-apiserver-authentication ConfigMap, and exec, attach, cp and port-forward over WebSocket
and SPDY/3.1 into a pretend container.

In-process:

    from tests.emulator import EmulatorConfig, EmulatorServer
    with EmulatorServer(EmulatorConfig(tls_cert_file=..., tls_private_key_file=...,
                                       secure_port=0, ...)) as server:
        ... server.url ... server.records() ...

Command line: `python -m tests.emulator --help` (flags named like kube-apiserver's).
"""

from .authn import AuthenticationChain, AuthenticationResult, build_chain
from .requestheader import RequestHeaderAuthenticator, UserInfo, clear_authentication_headers
from .requestlog import RequestLogRecord, load_request_log
from .server import (
    Address,
    EmulatorConfig,
    EmulatorServer,
    build_authentication,
    build_authorization,
)

__all__ = [
    "Address",
    "AuthenticationChain",
    "AuthenticationResult",
    "EmulatorConfig",
    "EmulatorServer",
    "RequestHeaderAuthenticator",
    "RequestLogRecord",
    "UserInfo",
    "build_authentication",
    "build_authorization",
    "build_chain",
    "clear_authentication_headers",
    "load_request_log",
]
