"""OIDC ID tokens through the proxy with kubectl (kubeconfig `token:`), alongside static tokens
and Basic users, against a real local issuer over HTTPS (tests/support/oidc_issuer.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.configs import write_yaml
from tests.support.harness import Emulator, start_proxy_for
from tests.support.oidc_issuer import AUDIENCE, OidcIssuer, serving
from tests.support.processes import kubectl
from tests.support.users import TOKEN, TOKENS_CSV


@pytest.fixture
def issuer(tmp_path: Path) -> Iterator[OidcIssuer]:
    with serving(tmp_path / "issuer") as running:
        yield running


def test_id_tokens_end_to_end_with_kubectl(
    pki: Path, emulator: Emulator, issuer: OidcIssuer, tmp_path: Path
) -> None:
    (tmp_path / "tokens.csv").write_text(TOKENS_CSV)
    write_yaml(tmp_path / "oidc-users.yaml", {"users": {"oidc:alice": {"groups": ["on-call"]}}})
    flows = tmp_path / "flows.mitm"
    before = len(emulator.requests())
    proxy = start_proxy_for(
        pki, tmp_path, emulator.port, "-w", str(flows),
        authn={
            "tokens": "tokens.csv", "users": "oidc-users.yaml",
            "oidc": {"issuer_url": issuer.issuer_url, "audiences": [AUDIENCE],
                     "ca": str(issuer.ca_file), "username_prefix": "oidc:",
                     "groups_claim": "groups", "groups_prefix": "oidc:",
                     "signing_algs": ["RS256", "ES256"]},
        },
    )  # fmt: skip
    good = issuer.token(issuer.claims(groups=["devs", "ops"]), signer="ec-1")
    now = int(time.time())
    bad = {
        "expired": (issuer.token(issuer.claims(exp=now - 120)), "token expired"),
        "audience": (issuer.token(issuer.claims(aud="someone-else")), "wrong audience"),
        "alg none": (issuer.unsigned_token(), "signing algorithm none not allowed"),
        "hs256": (issuer.hs256_with_public_key(), "signing algorithm HS256 not allowed"),
    }
    try:
        result = kubectl(proxy.kubeconfig_with({"token": good}, "good"),
                         "auth", "whoami", "-o", "json")  # fmt: skip
        assert result.returncode == 0, result.stderr
        info = json.loads(result.stdout)["status"]["userInfo"]
        assert info == {"username": "oidc:alice", "groups": [
            "oidc:devs", "oidc:ops", "on-call", "system:authenticated"]}  # fmt: skip
        # The token file still answers for its tokens, before OIDC is asked.
        result = kubectl(proxy.kubeconfig_with({"token": TOKEN}, "static"),
                         "auth", "whoami", "-o", "json")  # fmt: skip
        assert json.loads(result.stdout)["status"]["userInfo"]["username"] == "ci-bot"
        for name, (token, _) in bad.items():
            kubeconfig = proxy.kubeconfig_with({"token": token}, name.replace(" ", "-"))
            result = kubectl(kubeconfig, "get", "pods")
            assert result.returncode == 1, name
            assert "You must be logged in to the server" in result.stderr, name
    finally:
        proxy.process.stop()
    log = proxy.process.output()
    for name, (token, reason) in bad.items():
        assert f"login refused from 127.0.0.1: token: unknown token; oidc: invalid ID token " \
               f"(user None) ({reason})" in log, name  # fmt: skip
        assert token not in log
    assert good not in log and good.encode() not in flows.read_bytes()
    assert issuer.jwks_fetches == 1
    ssr = [r for r in emulator.requests()[before:] if r["path"].startswith("/apis/auth")]
    assert ssr[0]["authentication"]["user"]["username"] == "oidc:alice"
    assert not any(n.lower() == "authorization" for r in ssr for n, _ in r["headers"])
