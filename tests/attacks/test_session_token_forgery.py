"""Attack class: forging, altering and stretching session tokens, against the real proxy.

Every forgery gets a 401 and nothing reaches the API server; a session token cannot mint a
new one; the token endpoint is answered by the proxy, never forwarded. See
docs/threat-model.md, "Session tokens: forgery, algorithm confusion, renewal chains".
"""

from __future__ import annotations

import base64
import hmac
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from joserfc import jws
from joserfc.jwk import RSAKey
from joserfc.jws import JWSRegistry

from tests.support.harness import Emulator, Proxy, start_proxy_for
from tests.support.users import ALICE_PASSWORD, basic_header

TOKEN_PATH = "/kube-front-proxy/v1/token"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def proxy(
    pki: Path, emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    workdir = tmp_path_factory.mktemp("forgery")
    (workdir / "session-key").write_text(base64.b64encode(os.urandom(32)).decode())
    authn = {"session_tokens": {"signing_key_file": "session-key"}}
    with start_proxy_for(pki, workdir, emulator.port, authn=authn) as p:
        yield p


def mint(proxy: Proxy, authorization: tuple[str, str]) -> tuple[int, dict[str, Any]]:
    status, _, body = proxy.raw("POST", TOKEN_PATH, [authorization], b"")
    return status, json.loads(body)


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    return claims


def hs256(secret: bytes, header: dict[str, Any], claims: dict[str, Any]) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(hmac.digest(secret, signing_input.encode(), 'sha256'))}"


def test_forged_and_altered_tokens_reach_nothing(proxy: Proxy, emulator: Emulator) -> None:
    status, answer = mint(proxy, basic_header("bcrypt-user", "bcrypt-user-secret"))
    assert status == 200
    bobs = answer["status"]["token"]
    header, _, signature = bobs.split(".")
    as_alice = {**claims_of(bobs), "sub": "alice"}
    with_groups = {**claims_of(bobs), "src": "x509", "grp": ["system:masters"]}
    jwt = {"alg": "HS256", "typ": "JWT"}
    rsa = RSAKey.generate_key(2048)
    rs256 = JWSRegistry(algorithms=["RS256"])
    forgeries = {
        "alg none": f"{b64(b'{"alg":"none"}')}.{b64(json.dumps(as_alice).encode())}.",
        "another user, the old signature": f"{header}.{encoded(as_alice)}.{signature}",
        "groups added, the old signature": f"{header}.{encoded(with_groups)}.{signature}",
        "a guessed key": hs256(b"secret", jwt, as_alice),
        "HS256 keyed with a public key": hs256(rsa.as_pem(private=False), jwt, as_alice),
        "RS256 with the attacker's key": jws.serialize_compact(
            {"alg": "RS256", "typ": "JWT"}, json.dumps(as_alice).encode(), rsa, registry=rs256
        ),
    }
    before = len(emulator.requests())
    for name, token in forgeries.items():
        forged = [("Authorization", f"Bearer {token}")]
        status, _, _ = proxy.raw("GET", "/api/v1/namespaces/default/pods", forged,
                                 source="127.0.0.9")  # fmt: skip
        assert status == 401, name
    assert emulator.requests()[before:] == []
    # Control: the real token works, as bob's user.
    status, _, _ = proxy.raw("GET", "/api", [("Authorization", f"Bearer {bobs}")])
    assert status == 200
    [record] = emulator.requests()[before:]
    assert ["X-Remote-User", "bcrypt-user"] in record["headers"]


def encoded(claims: dict[str, Any]) -> str:
    return b64(json.dumps(claims).encode())


def test_a_token_cannot_mint_another(proxy: Proxy, emulator: Emulator) -> None:
    """Renewal chains would make a stolen token live for ever: only a real login mints."""
    status, answer = mint(proxy, basic_header("alice", ALICE_PASSWORD))
    assert status == 200
    token = answer["status"]["token"]
    issued = proxy.process.output().count(" issued to ")
    status, refused = mint(proxy, ("Authorization", f"Bearer {token}"))
    assert status == 403 and "cannot be exchanged" in refused["message"]
    assert refused["kind"] == "Status" and token not in json.dumps(refused)
    assert proxy.process.output().count(" issued to ") == issued


def test_the_token_endpoint_is_never_forwarded(proxy: Proxy, emulator: Emulator) -> None:
    before = len(emulator.requests())
    for method, path, headers in [
        ("POST", TOKEN_PATH, []),  # no login: 401
        ("POST", TOKEN_PATH, [basic_header("alice", "wrong")]),
        ("GET", TOKEN_PATH, [basic_header("alice", ALICE_PASSWORD)]),  # 405
        ("POST", TOKEN_PATH + "?x=1", [basic_header("alice", ALICE_PASSWORD)]),
        ("POST", "/kube-front-proxy/v2/anything", [basic_header("alice", ALICE_PASSWORD)]),
        ("POST", "/kube-front-proxy", [basic_header("alice", ALICE_PASSWORD)]),
    ]:
        status, _, _ = proxy.raw(method, path, headers, b"", source="127.0.0.8")
        assert status in (200, 401, 404, 405), (method, path, status)
    assert emulator.requests()[before:] == []


def test_forged_tokens_count_against_the_lockout(proxy: Proxy) -> None:
    forged = hs256(b"guess", {"alg": "HS256", "typ": "JWT"}, {"sub": "alice"})
    statuses = [
        proxy.raw("GET", "/api", [("Authorization", f"Bearer {forged}{i}")], source="127.0.0.77")[0]
        for i in range(120)
    ]
    assert set(statuses) == {401, 429} and statuses[-1] == 429
