"""Client-certificate chains that OpenSSL and `cryptography` read differently.

The attacker holds only the victim's certificate (certificates are public: saved flows hold
every client's). It sends the chain [its own leaf, victim's certificate] and proves the key of
its own leaf. Its leaf is encoded so that OpenSSL takes it and `cryptography` refuses it; if the
proxy dropped the unreadable leaf, the victim's certificate would become the chain's first
certificate, verify against the user CA, and the API server would hear the victim's name.

The root cause closed: the proven leaf is OpenSSL's peer certificate (the one whose key signed
the handshake), and a chain with any certificate that cannot be read is refused.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from mitmproxy import io

from devpki import CertKey, issue, make_ca
from tests.support import der
from tests.support.harness import Emulator, Proxy, start_proxy_for
from tests.support.http1 import raw_request

VICTIM = "victim-admin"
USERS_CA = make_ca("users")


@pytest.fixture(scope="module")
def victim() -> CertKey:
    return issue(USERS_CA, VICTIM, organizations=["system:masters"])


@pytest.fixture(scope="module")
def cert_proxy(
    pki: Path, emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    workdir = tmp_path_factory.mktemp("cert-proxy")
    USERS_CA.write(workdir, "users-ca")
    with start_proxy_for(
        pki, workdir, emulator.port, "-w", str(workdir / "flows.mitm"),
        authn={"client_ca": "users-ca.crt"}, upstream={"check_cluster_trust": False},
    ) as proxy:  # fmt: skip
        yield proxy


def present(proxy: Proxy, tmp_path: Path, chain: list[bytes], key: bytes) -> tuple[int, bytes]:
    """GET /api with this certificate chain (PEM, leaf first) and the key of its leaf."""
    (tmp_path / "chain.pem").write_bytes(b"".join(chain))
    (tmp_path / "key.pem").write_bytes(key)
    context = proxy.context()
    context.load_cert_chain(tmp_path / "chain.pem", tmp_path / "key.pem")
    status, _, body = raw_request("127.0.0.1", proxy.port, context, "GET", "/api", [])
    return status, body


def identities(emulator: Emulator, since: int) -> list[str]:
    return [
        value
        for record in emulator.requests()[since:]
        for name, value in record["headers"]
        if name.lower().startswith("x-remote-")
    ]


def assert_refused(status: int, body: bytes, emulator: Emulator, before: int) -> None:
    assert status == 401 and json.loads(body)["reason"] == "Unauthorized"
    assert emulator.requests()[before:] == []


@pytest.mark.parametrize("trick", sorted(der.NOT_DER))
@pytest.mark.parametrize("signer", ["self-signed", "user-ca"])
def test_an_unreadable_leaf_does_not_promote_the_victims_certificate(
    cert_proxy: Proxy, emulator: Emulator, victim: CertKey, tmp_path: Path, trick: str, signer: str
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = der.name("mallory")
    if signer == "self-signed":
        leaf = der.certificate(subject, subject, key, key, der.NOT_DER[trick])
    else:  # even a leaf the user CA really signed: it is the leaf, whatever it says
        issuer = der.name("users")
        leaf = der.certificate(subject, issuer, USERS_CA.key, key, der.NOT_DER[trick])
    before = len(emulator.requests())
    status, body = present(cert_proxy, tmp_path, [leaf.pem(), victim.cert_pem()], leaf.key_pem())
    assert_refused(status, body, emulator, before)
    assert VICTIM not in identities(emulator, 0)
    assert "unreadable" in cert_proxy.process.output()


def test_the_victims_own_key_logs_the_victim_in(
    cert_proxy: Proxy, emulator: Emulator, victim: CertKey, tmp_path: Path
) -> None:
    before = len(emulator.requests())
    status, _ = present(cert_proxy, tmp_path, [victim.cert_pem()], victim.key_pem())
    assert status == 200
    assert identities(emulator, before) == [VICTIM, "system:masters"]


def test_the_victims_certificate_without_its_key_is_refused(
    cert_proxy: Proxy, emulator: Emulator, victim: CertKey, tmp_path: Path
) -> None:
    """A readable leaf of the attacker's, the victim's certificate behind it."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = der.name("mallory")
    leaf = der.certificate(subject, subject, key, key)
    before = len(emulator.requests())
    status, body = present(cert_proxy, tmp_path, [leaf.pem(), victim.cert_pem()], leaf.key_pem())
    assert_refused(status, body, emulator, before)


@pytest.mark.parametrize("trick", sorted(der.NOT_DER))
def test_an_unreadable_certificate_anywhere_in_the_chain_is_refused(
    cert_proxy: Proxy, emulator: Emulator, victim: CertKey, tmp_path: Path, trick: str
) -> None:
    """Even behind the victim's own leaf and key: kube-apiserver (Go's TLS) refuses the
    handshake of a chain it cannot parse, so nothing on it is trusted here either."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = der.name("some intermediate")
    extra = der.certificate(subject, subject, key, key, der.NOT_DER[trick])
    before = len(emulator.requests())
    status, body = present(cert_proxy, tmp_path, [victim.cert_pem(), extra.pem()], victim.key_pem())
    assert_refused(status, body, emulator, before)


def test_the_flow_file_shows_the_proven_certificate_only(
    cert_proxy: Proxy, emulator: Emulator, victim: CertKey, tmp_path: Path
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = der.name("mallory")
    leaf = der.certificate(subject, subject, key, key, der.NOT_DER["boolean-true-as-01"])
    present(cert_proxy, tmp_path, [leaf.pem(), victim.cert_pem()], leaf.key_pem())
    flows = cert_proxy.workdir / "flows.mitm"
    with flows.open("rb") as f:
        last = list(io.FlowReader(f).stream())[-1]
    assert last.metadata.get("k8s_user") is None
    assert last.client_conn.certificate_list == []


def test_a_resumed_session_keeps_the_certificate_it_proved(
    cert_proxy: Proxy, emulator: Emulator, victim: CertKey, tmp_path: Path
) -> None:
    """TLS resumption proves no key again: the session carries the certificate proven when it
    was made, and OpenSSL gives it back as the peer certificate."""
    victim.write(tmp_path, "victim")
    context = cert_proxy.context()
    context.load_cert_chain(tmp_path / "victim.crt", tmp_path / "victim.key")
    before = len(emulator.requests())
    session = None
    reused = []
    for _ in range(3):
        raw = socket.create_connection(("127.0.0.1", cert_proxy.port))
        with context.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as tls:
            tls.sendall(b"GET /api HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b"".join(iter(lambda: tls.recv(65536), b""))
            assert answer.startswith(b"HTTP/1.1 200 ")
            reused.append(tls.session_reused)
            session = tls.session
    assert reused == [False, True, True]
    assert identities(emulator, before) == [VICTIM, "system:masters"] * 3
