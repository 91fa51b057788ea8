"""The in-process API-server emulator's kubeadm layout: its PKI, its config, and one raw HTTPS
request to it."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from devpki import CertKey, issue, make_ca
from tests.emulator import EmulatorConfig, EmulatorServer

from .http1 import H1Response, raw_request

FRONT_PROXY_CN = "front-proxy-client"
# What a front proxy sends for alice, over HTTP/2.
ALICE_HEADERS = [("x-remote-user", "alice"), ("x-remote-group", "system:masters"),
         ("x-remote-group", "devs"), ("x-remote-extra-scopes", "view")]  # fmt: skip


@dataclass(frozen=True)
class EmulatorPKI:
    """kubeadm layout: the front-proxy CA is not the client CA."""

    dir: Path
    cluster_ca: CertKey
    front_proxy_ca: CertKey
    other_ca: CertKey
    apiserver: CertKey
    front_proxy_client: CertKey

    def path(self, name: str) -> Path:
        return self.dir / name

    def write(self, pair: CertKey, name: str) -> tuple[Path, Path]:
        """Write a certificate and key once under a unique name; returns (crt, key)."""
        crt, key = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        if not crt.exists():
            pair.write(self.dir, name)
        return crt, key

    def write_chain(self, pairs: Sequence[CertKey], name: str) -> tuple[Path, Path]:
        """A client certificate file holding leaf + intermediates, and the leaf's key."""
        crt, key = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        crt.write_bytes(b"".join(p.cert_pem() for p in pairs))
        key.write_bytes(pairs[0].key_pem())
        return crt, key


def make_emulator_pki(directory: Path) -> EmulatorPKI:
    cluster_ca = make_ca("kubernetes")
    front_proxy_ca = make_ca("front-proxy-ca")
    other_ca = make_ca("some-other-ca")
    apiserver = issue(
        cluster_ca, "kube-apiserver", dns_names=("localhost",), ip_addresses=("127.0.0.1",),
        usages=("server",),
    )  # fmt: skip
    front_proxy_client = issue(front_proxy_ca, FRONT_PROXY_CN, usages=("client",))
    pki = EmulatorPKI(directory, cluster_ca, front_proxy_ca, other_ca, apiserver,
                      front_proxy_client)  # fmt: skip
    for pair, name in [
        (cluster_ca, "ca"),
        (front_proxy_ca, "front-proxy-ca"),
        (other_ca, "other-ca"),
        (apiserver, "apiserver"),
        (front_proxy_client, "front-proxy-client"),
    ]:
        pki.write(pair, name)
    return pki


def kubeadm_config(pki: EmulatorPKI | Path, **overrides: object) -> EmulatorConfig:
    """kubeadm's flags and port 0, with the certificates of pki (this module's, or the
    session's `pki` directory from certs/devpki.py, which has the same file names)."""
    directory = pki.dir if isinstance(pki, EmulatorPKI) else pki
    settings: dict[str, object] = {
        "tls_cert_file": directory / "apiserver.crt",
        "tls_private_key_file": directory / "apiserver.key",
        "secure_port": 0,
        "client_ca_file": directory / "ca.crt",
        "requestheader_client_ca_file": directory / "front-proxy-ca.crt",
        "requestheader_allowed_names": (FRONT_PROXY_CN,),
    }
    settings.update(overrides)
    return EmulatorConfig(**settings)  # type: ignore[arg-type]


def client_context(pki: EmulatorPKI, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.path("ca.crt")))
    # These raw requests are HTTP/1.1: offering h2 too would get h2 (tests/emulator/http2.py).
    context.set_alpn_protocols(["http/1.1"])
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    return context


def request(
    server: EmulatorServer,
    pki: EmulatorPKI,
    method: str,
    path: str,
    headers: Sequence[tuple[str, str]] = (),
    *,
    cert: tuple[Path, Path] | None = None,
    body: bytes | None = None,
) -> H1Response:
    """One HTTPS request with exactly these headers (plus Host), repeated names included."""
    status, response_headers, content = raw_request(
        server.host, server.port, client_context(pki, cert), method, path, list(headers), body,
        timeout=10,
    )  # fmt: skip
    return H1Response(status, response_headers, content)


def front_proxy_context(pki: Path) -> ssl.SSLContext:
    """What the front proxy presents: the cluster CA and its front-proxy client certificate."""
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(pki / "front-proxy-client.crt", pki / "front-proxy-client.key")
    return context
