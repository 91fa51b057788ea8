"""Logging in with a client certificate (authn/client_certs.py), alone and in the authenticator
order."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from devpki import CertKey
from kube_front_proxy.authn.client_certs import CertificateRejected, ClientCertAuthenticator
from tests.support.client_certs import CERTS, USERS_CA, chain, login
from tests.support.configs import write_kubeconfig, write_yaml
from tests.support.harness import Emulator, start_proxy_for
from tests.support.processes import kubectl
from tests.support.users import ALICE_PASSWORD, basic_header


def test_the_common_name_is_the_user_and_organizations_are_groups() -> None:
    identity = ClientCertAuthenticator([USERS_CA.cert]).authenticate([CERTS["good"].cert])
    assert (identity.user, identity.groups) == ("carol", ("devs", "ops"))


def test_a_certificate_without_extended_key_usage_is_valid_for_clients() -> None:
    # Go's x509.Verify (and so kube-apiserver) treats a missing EKU as any usage.
    identity = ClientCertAuthenticator([USERS_CA.cert]).authenticate([CERTS["no-eku"].cert])
    assert identity.user == "dave"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("server-only", "not valid for client authentication"),
        ("other-ca", "candidates exhausted"),
        ("expired", "not valid at validation time"),
        ("not-yet", "not valid at validation time"),
        ("ca-as-leaf", "basicConstraints.cA must not be asserted"),
        ("empty-cn", "common name of the client certificate is empty"),
    ],
)
def test_refused_certificates(name: str, message: str) -> None:
    with pytest.raises(CertificateRejected, match=message):
        ClientCertAuthenticator([USERS_CA.cert]).authenticate([CERTS[name].cert])


def test_a_verified_chain_is_remembered_until_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    authenticator = ClientCertAuthenticator([USERS_CA.cert])
    calls = []
    verify = authenticator._verify
    monkeypatch.setattr(authenticator, "_verify", lambda *a: calls.append(1) or verify(*a))
    for _ in range(3):
        authenticator.authenticate([CERTS["good"].cert])
    assert len(calls) == 1
    with pytest.raises(CertificateRejected):
        authenticator.authenticate([CERTS["other-ca"].cert])
    with pytest.raises(CertificateRejected):
        authenticator.authenticate([CERTS["other-ca"].cert])
    assert len(calls) == 3  # failures are never remembered


async def test_the_first_authenticator_in_the_order_wins(tmp_path: Path) -> None:
    basic = [basic_header("alice", ALICE_PASSWORD)[1]]
    first = await login(tmp_path, ("x509", "htpasswd")).authenticate(basic, "10.0.0.1",
                                                                    chain("good"))  # fmt: skip
    assert (first.authenticator, first.identity and first.identity.user) == ("x509", "carol")
    assert first.lines == ((b"X-Remote-User", b"carol"), (b"X-Remote-Group", b"devs"),
                           (b"X-Remote-Group", b"ops"))  # fmt: skip
    second = await login(tmp_path, ("htpasswd", "x509")).authenticate(basic, "10.0.0.1",
                                                                     chain("good"))  # fmt: skip
    assert (second.authenticator, second.identity and second.identity.user) == (
        "htpasswd", "alice")  # fmt: skip


async def test_a_bad_certificate_falls_through_to_the_password(tmp_path: Path) -> None:
    basic = [basic_header("alice", ALICE_PASSWORD)[1]]
    outcome = await login(tmp_path, ("x509", "htpasswd")).authenticate(
        basic, "10.0.0.1", chain("expired"))  # fmt: skip
    assert outcome.authenticator == "htpasswd"


async def test_a_bad_certificate_alone_is_refused_but_never_locks_out(tmp_path: Path) -> None:
    proxy_login = login(tmp_path, ("x509", "htpasswd"))
    for _ in range(5):
        outcome = await proxy_login.authenticate([], "10.0.0.1", chain("other-ca"))
        assert outcome.identity is None and outcome.retry_after == 0
        assert outcome.reason == "certificate not accepted"
        assert "candidates exhausted" in outcome.detail
    good = await proxy_login.authenticate([], "10.0.0.1", chain("good"))
    assert good.identity is not None


async def test_an_unreadable_chain_refuses_the_request_even_with_a_password(
    tmp_path: Path,
) -> None:
    """As Go's TLS refuses the handshake of a chain it cannot parse (authn/peer_certificates.py)."""
    proxy_login = login(tmp_path, ("x509", "htpasswd"))
    basic = [basic_header("alice", ALICE_PASSWORD)[1]]
    for _ in range(3):
        outcome = await proxy_login.authenticate(basic, "10.0.0.1", (), unreadable_chain="why")
        assert (outcome.identity, outcome.reason, outcome.detail) == (
            None, "certificate not accepted", "why")  # fmt: skip
        assert outcome.retry_after == 0
    assert (await proxy_login.authenticate(basic, "10.0.0.1")).authenticator == "htpasswd"


async def test_a_common_name_cannot_inject_headers(tmp_path: Path) -> None:
    outcome = await login(tmp_path, ("x509",)).authenticate([], "10.0.0.1", chain("injection"))
    assert outcome.identity is None and outcome.lines == ()
    assert outcome.reason == "identity contains a control character (CR, LF, NUL, ...)"


async def test_both_reasons_are_given_when_both_fail(tmp_path: Path) -> None:
    basic = [basic_header("alice", "wrong")[1]]
    outcome = await login(tmp_path, ("x509", "htpasswd")).authenticate(
        basic, "10.0.0.1", chain("server-only"))  # fmt: skip
    assert outcome.reason == "x509: certificate not accepted; htpasswd: wrong password"
    assert outcome.claimed_user == "alice"


def cert_kubeconfig(directory: Path, port: int, pki: Path, pair: CertKey, name: str) -> Path:
    pair.write(directory, name)
    return write_kubeconfig(
        directory / f"kubeconfig-{name}", f"https://127.0.0.1:{port}", pki / "proxy-ca.crt",
        {"client-certificate": str(directory / f"{name}.crt"),
         "client-key": str(directory / f"{name}.key")},
    )  # fmt: skip


def test_client_certificates_end_to_end_with_kubectl(
    pki: Path, emulator: Emulator, tmp_path: Path
) -> None:
    USERS_CA.write(tmp_path, "users-ca")
    write_yaml(tmp_path / "cert-users.yaml", {"users": {"carol": {"groups": ["extra-group"]}}})
    before = len(emulator.requests())
    proxy = start_proxy_for(
        pki, tmp_path, emulator.port,
        authn={"client_ca": "users-ca.crt", "users": "cert-users.yaml"},
    )  # fmt: skip
    try:
        good = cert_kubeconfig(tmp_path, proxy.port, pki, CERTS["good"], "carol")
        result = kubectl(good, "auth", "whoami", "-o", "json")
        assert result.returncode == 0, result.stderr
        info = json.loads(result.stdout)["status"]["userInfo"]
        assert info == {
            "username": "carol",
            "groups": ["devs", "ops", "extra-group", "system:authenticated"],
        }
        for name in ("expired", "other-ca", "server-only"):
            bad = cert_kubeconfig(tmp_path, proxy.port, pki, CERTS[name], name)
            result = kubectl(bad, "get", "pods")
            assert result.returncode == 1, name
            assert "You must be logged in to the server" in result.stderr, name
        # Basic users still log in on the same port; kubectl sends no certificate then.
        assert proxy.whoami()["username"] == "alice"
    finally:
        proxy.process.stop()
    seen = [r for r in emulator.requests()[before:] if r["path"].startswith("/apis/auth")]
    assert [r["authentication"]["user"]["username"] for r in seen] == ["carol", "alice"]
    # kubectl speaks HTTP/2, and so does the proxy to the API server: lower-case names.
    carol = [[n, v] for n, v in seen[0]["headers"] if n.startswith("x-remote-")]
    assert carol == [["x-remote-user", "carol"], ["x-remote-group", "devs"],
                     ["x-remote-group", "ops"], ["x-remote-group", "extra-group"]]  # fmt: skip
    log = proxy.process.output()
    for detail in ("not valid at validation time", "candidates exhausted",
                   "not valid for client authentication"):  # fmt: skip
        assert re.search(
            f"certificate not accepted \\(user None\\) \\(validation failed: .*{detail}", log
        )
