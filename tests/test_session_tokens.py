"""Session tokens (authn/session_tokens.py, authn/revocation_list.py, authn/token_endpoint.py, the
session-token authenticator): signing, expiry, tampering, wrong keys, algorithm confusion,
revocation, and a changed password or removed user voiding every token issued before."""

from __future__ import annotations

import base64
import datetime
import gc
import hmac
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from joserfc import jws
from joserfc.jwk import OctKey, RSAKey
from joserfc.jws import JWSRegistry
from mitmproxy.test import tflow

from devpki import issue as issue_certificate
from kube_front_proxy.authn import session_tokens
from kube_front_proxy.authn.client_certs import ClientCertAuthenticator
from kube_front_proxy.authn.credential_cache import CredentialCache
from kube_front_proxy.authn.lockout import Lockout, LockoutPolicy
from kube_front_proxy.authn.login import Login, Outcome
from kube_front_proxy.authn.oidc import OidcAuthenticator
from kube_front_proxy.authn.revocation import MemoryRevocations
from kube_front_proxy.authn.revocation_list import RevocationList
from kube_front_proxy.authn.session_token_config import SessionTokenSettings
from kube_front_proxy.authn.session_tokens import (
    EXPIRED,
    INVALID,
    REVOKED,
    VOIDED,
    Basis,
    SessionTokenRejected,
    SessionTokens,
)
from kube_front_proxy.authn.token_endpoint import (
    NO_RENEWAL,
    NOT_ENABLED,
    TOKEN_PATH,
    USER_REVOKED,
    answer,
    is_own_path,
)
from kube_front_proxy.config.errors import ConfigError
from kube_front_proxy.config.runtime import Runtime, build_runtime
from kube_front_proxy.identity.headers import HeaderNames, Identity, IdentityHeaderWriter
from kube_front_proxy.seam.withheld_response import Withheld
from tests.support.client_certs import OTHER_CA, USERS_CA
from tests.support.configs import htpasswd_add, oidc_section, proxy_config, write_yaml
from tests.support.token_strategies import ISSUER, KEY
from tests.support.token_strategies import tokens as fuzz_tokens
from tests.support.users import basic_header

CLIENT = "192.0.2.7"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_key(directory: Path, name: str = "session-key", size: int = 32) -> Path:
    path = directory / name
    path.write_text(base64.b64encode(os.urandom(size)).decode() + "\n")
    return path


def write_config(directory: Path, pki: Path, **session: Any) -> Path:
    authn: dict[str, Any] = {
        "tokens": "tokens.csv",
        "session_tokens": {"signing_key_file": "session-key", **session},
    }
    return write_yaml(directory / "config.yaml", proxy_config(pki, 6443, 8443, authn=authn))


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    htpasswd_add(tmp_path / "htpasswd", "alice", "alice-pw", "apr1")
    htpasswd_add(tmp_path / "htpasswd", "bob", "bob-pw", "apr1")
    write_yaml(tmp_path / "users.yaml", {"users": {"alice": {"groups": ["dev"], "uid": "7"}}})
    (tmp_path / "tokens.csv").write_text('static-token-of-carol,carol,42,"deployers"\n')
    new_key(tmp_path)
    return tmp_path


def load(config_dir: Path, pki: Path, **session: Any) -> Runtime:
    return build_runtime(write_config(config_dir, pki, **session))


async def log_in(login: Login, authorization: str) -> Outcome:
    return await login.authenticate([authorization], CLIENT)


async def issue(runtime: Runtime, authorization: str) -> str:
    outcome = await log_in(runtime.login, authorization)
    assert outcome.identity is not None, outcome.reason
    given = await answer("POST", TOKEN_PATH, outcome, runtime.login.session_tokens)
    assert given.response.status_code == 200, given.response.text
    assert given.issued is not None
    return given.issued.token


def basic(user: str, password: str) -> str:
    return basic_header(user, password)[1]


def bearer(token: str) -> str:
    return f"Bearer {token}"


def tokens_of(runtime: Runtime) -> SessionTokens:
    assert runtime.login.session_tokens is not None
    return runtime.login.session_tokens


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split(".")
    pad = "=="
    return (json.loads(base64.urlsafe_b64decode(header + pad)),
            json.loads(base64.urlsafe_b64decode(payload + pad)))  # fmt: skip


def signed(key: Any, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A token signed with any algorithm and key, the header as given."""
    registry = JWSRegistry(algorithms=[header["alg"]], strict_check_header=False)
    return jws.serialize_compact(header, json.dumps(claims).encode(), key, registry=registry)


def hs256(secret: bytes, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """HS256 by hand, with any secret (joserfc itself refuses to key an HMAC with a PEM)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    mac = hmac.digest(secret, signing_input.encode(), "sha256")
    return f"{signing_input}.{b64(mac)}"


def session_reason(outcome: Outcome) -> str:
    """The session-token authenticator's refusal (the static-token one refuses too)."""
    assert outcome.identity is None
    return outcome.reason.removeprefix("token: unknown token; session-token: ")


def our_key(runtime: Runtime) -> OctKey:
    """The proxy's own derived signing key: forgeries that get everything right but one thing."""
    key: OctKey = tokens_of(runtime)._signing_key
    return key


# -- signing and what a token holds ---------------------------------------------------------


async def test_a_token_logs_its_user_in_with_the_identity_of_the_files(
    config_dir: Path, pki: Path
) -> None:
    runtime = load(config_dir, pki)
    token = await issue(runtime, basic("alice", "alice-pw"))
    outcome = await log_in(runtime.login, bearer(token))
    assert outcome.identity == Identity("alice", ("dev",), "7")
    assert outcome.authenticator == "session-token"
    assert outcome.session is not None and outcome.session.source == "htpasswd"
    assert outcome.lines == runtime.login._lines["alice"]


async def test_a_token_is_short_and_carries_no_secret(config_dir: Path, pki: Path) -> None:
    runtime = load(config_dir, pki)
    token = await issue(runtime, basic("alice", "alice-pw"))
    header, claims = parts(token)
    assert header == {"alg": "HS256", "typ": "JWT"}
    assert set(claims) == {"iss", "sub", "src", "jti", "iat", "exp", "fp"}
    assert (claims["iss"], claims["sub"], claims["src"]) == (
        "kube-front-proxy",
        "alice",
        "htpasswd",
    )
    assert claims["exp"] - claims["iat"] == 8 * 3600
    hashed = runtime.login.htpasswd.hash_of("alice")  # type: ignore[union-attr]
    assert hashed and hashed not in json.dumps(claims) and "alice-pw" not in token
    assert len(token) < 400


async def test_each_token_has_its_own_id(config_dir: Path, pki: Path) -> None:
    runtime = load(config_dir, pki)
    ids = {parts(await issue(runtime, basic("alice", "alice-pw")))[1]["jti"] for _ in range(20)}
    assert len(ids) == 20


async def test_the_identity_is_read_fresh_from_users_yaml_at_each_use(
    config_dir: Path, pki: Path
) -> None:
    token = await issue(load(config_dir, pki), basic("alice", "alice-pw"))
    write_yaml(config_dir / "users.yaml", {"users": {"alice": {"groups": ["ops"]}}})
    outcome = await log_in(load(config_dir, pki).login, bearer(token))
    assert outcome.identity == Identity("alice", ("ops",))


async def test_a_static_token_login_gets_a_token_tied_to_that_static_token(
    config_dir: Path, pki: Path
) -> None:
    token = await issue(load(config_dir, pki), bearer("static-token-of-carol"))
    outcome = await log_in(load(config_dir, pki).login, bearer(token))
    assert outcome.identity == Identity("carol", ("deployers",), "42")
    # The static token is replaced by another for the same user: the session token dies.
    (config_dir / "tokens.csv").write_text('another-token-of-carol,carol,42,"deployers"\n')
    outcome = await log_in(load(config_dir, pki).login, bearer(token))
    assert session_reason(outcome) == VOIDED


# -- expiry ---------------------------------------------------------------------------------


def test_expiry(config_dir: Path, pki: Path) -> None:
    tokens = tokens_of(load(config_dir, pki, ttl_seconds=60))
    issued = tokens.issue(Identity("alice"), Basis("htpasswd", b"h"), now=1_000_000.5)
    assert (issued.issued_at, issued.expires_at) == (1_000_000, 1_000_060)
    assert tokens.verify(issued.token, now=1_000_059.9).user == "alice"
    for now in (1_000_060, 1_000_061, 2_000_000):
        with pytest.raises(SessionTokenRejected) as e:
            tokens.verify(issued.token, now=now)
        assert e.value.reason == EXPIRED


def test_a_lower_ttl_shortens_tokens_already_issued(config_dir: Path, pki: Path) -> None:
    issued = tokens_of(load(config_dir, pki, ttl_seconds=3600)).issue(
        Identity("alice"), Basis("htpasswd", b"h"), now=1_000_000
    )
    shorter = tokens_of(load(config_dir, pki, ttl_seconds=60))
    assert shorter.verify(issued.token, now=1_000_059).user == "alice"
    with pytest.raises(SessionTokenRejected, match=EXPIRED):
        shorter.verify(issued.token, now=1_000_060)


def test_a_token_never_outlives_the_certificate_or_id_token_it_was_issued_to(
    config_dir: Path, pki: Path
) -> None:
    tokens = tokens_of(load(config_dir, pki))
    issued = tokens.issue(Identity("carol", ("devs",)),
                          Basis("x509", b"ca", not_after=1_000_100.9, groups=("devs",)),
                          now=1_000_000)  # fmt: skip
    assert issued.expires_at == 1_000_100
    assert parts(issued.token)[1]["grp"] == ["devs"]


def test_a_token_from_the_future_is_refused(config_dir: Path, pki: Path) -> None:
    tokens = tokens_of(load(config_dir, pki))
    issued = tokens.issue(Identity("alice"), Basis("htpasswd", b"h"), now=1_000_000)
    assert tokens.verify(issued.token, now=1_000_000 - 60).user == "alice"  # clock skew
    with pytest.raises(SessionTokenRejected, match=INVALID):
        tokens.verify(issued.token, now=1_000_000 - 61)


# -- tampering, wrong keys, algorithm confusion -----------------------------------------------


def refusal(tokens: SessionTokens, token: str) -> SessionTokenRejected:
    with pytest.raises(SessionTokenRejected) as e:
        tokens.verify(token)
    if len(token) > 8:
        assert token not in str(e.value) and token not in e.value.detail
    return e.value


async def test_tampered_tokens_are_refused(config_dir: Path, pki: Path) -> None:
    runtime = load(config_dir, pki)
    tokens = tokens_of(runtime)
    token = await issue(runtime, basic("bob", "bob-pw"))
    header, payload, signature = token.split(".")
    claims = parts(token)[1]
    forged = [
        # another user, a later expiry, another source, with bob's signature
        f"{header}.{b64(json.dumps({**claims, 'sub': 'alice'}).encode())}.{signature}",
        f"{header}.{b64(json.dumps({**claims, 'exp': claims['exp'] + 9999}).encode())}.{signature}",
        f"{header}.{b64(json.dumps({**claims, 'src': 'x509', 'grp': ['system:masters']}).encode())}"
        f".{signature}",
        # the signature altered, cut, removed
        f"{header}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}",
        f"{header}.{payload}.{signature[:10]}",
        f"{header}.{payload}.",
        f"{header}.{payload}",
        token + ".extra",
        "",
        "not-a-token",
        "a" * 9000,
    ]
    for token in forged:
        assert refusal(tokens, token).reason == INVALID


def test_a_token_of_another_key_is_refused(config_dir: Path, pki: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    for name in ("htpasswd", "users.yaml", "tokens.csv"):
        (other / name).write_bytes((config_dir / name).read_bytes())
    new_key(other)
    theirs = tokens_of(load(other, pki)).issue(Identity("alice"), Basis("htpasswd", b"h"))
    assert refusal(tokens_of(load(config_dir, pki)), theirs.token).reason == INVALID


def test_the_raw_key_file_is_not_the_signing_key(config_dir: Path, pki: Path) -> None:
    # The key is derived per purpose: HS256 keyed with the file's bytes themselves is refused.
    tokens = tokens_of(load(config_dir, pki))
    raw = base64.b64decode((config_dir / "session-key").read_text())
    good = tokens.issue(Identity("alice"), Basis("htpasswd", b"h"))
    forged = signed(OctKey.import_key(raw), {"alg": "HS256", "typ": "JWT"}, parts(good.token)[1])
    assert refusal(tokens, forged).reason == INVALID


def test_algorithm_confusion(config_dir: Path, pki: Path) -> None:
    runtime = load(config_dir, pki)
    tokens = tokens_of(runtime)
    claims = parts(tokens.issue(Identity("alice"), Basis("htpasswd", b"h")).token)[1]
    payload = b64(json.dumps(claims).encode())
    rsa = RSAKey.generate_key(2048)
    public_pem = rsa.as_pem(private=False)
    forged = {
        # alg none, in every spelling, with and without a signature part
        "none": f"{b64(b'{"alg":"none","typ":"JWT"}')}.{payload}.",
        "None": f"{b64(b'{"alg":"None","typ":"JWT"}')}.{payload}.",
        "NONE": f"{b64(b'{"alg":"NONE","typ":"JWT"}')}.{payload}.c2ln",
        "no alg": f"{b64(b'{"typ":"JWT"}')}.{payload}.",
        # asymmetric algorithms, signed with a key of their own
        "RS256": signed(rsa, {"alg": "RS256", "typ": "JWT"}, claims),
        "PS256": signed(rsa, {"alg": "PS256", "typ": "JWT"}, claims),
        # HS/RS confusion: HMAC keyed with a public key
        "HS256 keyed with an RSA public key": hs256(
            public_pem, {"alg": "HS256", "typ": "JWT"}, claims
        ),
        "HS256 keyed with nothing": hs256(b"", {"alg": "HS256", "typ": "JWT"}, claims),
        # the right key, another HMAC: exactly one algorithm is accepted
        "HS384": signed(our_key(runtime), {"alg": "HS384", "typ": "JWT"}, claims),
        "HS512": signed(our_key(runtime), {"alg": "HS512", "typ": "JWT"}, claims),
        # the right key and algorithm, header parameters that point elsewhere
        "kid": signed(our_key(runtime), {"alg": "HS256", "typ": "JWT", "kid": "x"}, claims),
        "jwk": signed(
            our_key(runtime),
            {"alg": "HS256", "typ": "JWT", "jwk": rsa.as_dict(private=False)},
            claims,
        ),
        "crit": signed(
            our_key(runtime), {"alg": "HS256", "typ": "JWT", "crit": ["b64"], "b64": True}, claims
        ),
        "no typ": signed(our_key(runtime), {"alg": "HS256"}, claims),
    }
    for name, token in forged.items():
        refused = refusal(tokens, token)
        assert refused.reason == INVALID, name
        if name in ("none", "None", "NONE", "no alg", "RS256", "PS256", "HS384", "HS512"):
            # joserfc's registry, which knows HS256 only, refused it: not the header check.
            assert refused.detail.startswith("signature not verified"), (name, refused.detail)
    # Control: the right key, algorithm and header pass.
    assert tokens.verify(signed(our_key(runtime), {"alg": "HS256", "typ": "JWT"}, claims))


def test_claims_must_be_the_proxys_own(config_dir: Path, pki: Path) -> None:
    runtime = load(config_dir, pki)
    tokens = tokens_of(runtime)
    claims = parts(tokens.issue(Identity("alice"), Basis("htpasswd", b"h")).token)[1]
    bad = [
        {**claims, "iss": "https://issuer.example"},
        {**claims, "src": "session-token"},  # no renewal chain, whatever the signature
        {**claims, "src": "ldap"},
        {**claims, "sub": ""},
        {**claims, "sub": 7},
        {**claims, "jti": "short"},
        {**claims, "exp": "never"},
        {**claims, "exp": True},
        {**claims, "grp": "system:masters"},
        {k: v for k, v in claims.items() if k != "fp"},
        {k: v for k, v in claims.items() if k != "exp"},
        [claims],
    ]
    for value in bad:
        token = jws.serialize_compact({"alg": "HS256", "typ": "JWT"}, json.dumps(value).encode(),
                                      our_key(runtime))  # fmt: skip
        assert refusal(tokens, token).reason == INVALID, value
    nan = json.dumps(claims).replace(str(claims["exp"]), "NaN").encode()
    token = jws.serialize_compact({"alg": "HS256", "typ": "JWT"}, nan, our_key(runtime))
    assert refusal(tokens, token).reason == INVALID


# -- a changed password, a removed user, revocation -----------------------------------------


async def test_a_changed_password_voids_every_token_issued_before(
    config_dir: Path, pki: Path
) -> None:
    runtime = load(config_dir, pki)
    first, second = [await issue(runtime, basic("alice", "alice-pw")) for _ in range(2)]
    bob = await issue(runtime, basic("bob", "bob-pw"))
    htpasswd_add(config_dir / "htpasswd", "alice", "new-pw", "apr1")
    reloaded = load(config_dir, pki)
    for token in (first, second):
        assert session_reason(await log_in(reloaded.login, bearer(token))) == VOIDED
    assert (await log_in(reloaded.login, bearer(bob))).identity == Identity("bob")
    # A token issued after the change works.
    fresh = await issue(reloaded, basic("alice", "new-pw"))
    assert (await log_in(reloaded.login, bearer(fresh))).identity is not None


async def test_the_same_password_set_again_voids_tokens_too(config_dir: Path, pki: Path) -> None:
    token = await issue(load(config_dir, pki), basic("alice", "alice-pw"))
    htpasswd_add(config_dir / "htpasswd", "alice", "alice-pw", "apr1")  # a new salt
    outcome = await log_in(load(config_dir, pki).login, bearer(token))
    assert session_reason(outcome) == VOIDED


async def test_a_removed_user_loses_every_token(config_dir: Path, pki: Path) -> None:
    token = await issue(load(config_dir, pki), basic("bob", "bob-pw"))
    lines = (config_dir / "htpasswd").read_text().splitlines()
    (config_dir / "htpasswd").write_text("\n".join(x for x in lines if not x.startswith("bob:")))
    outcome = await log_in(load(config_dir, pki).login, bearer(token))
    assert session_reason(outcome) == VOIDED


async def test_a_new_signing_key_voids_every_token(config_dir: Path, pki: Path) -> None:
    token = await issue(load(config_dir, pki), basic("alice", "alice-pw"))
    new_key(config_dir)
    outcome = await log_in(load(config_dir, pki).login, bearer(token))
    assert session_reason(outcome) == INVALID


async def test_revocation_by_token_id_and_by_user(config_dir: Path, pki: Path) -> None:
    write_yaml(config_dir / "revoked.yaml", {})
    runtime = load(config_dir, pki, revocation_file="revoked.yaml")
    a1, a2 = [await issue(runtime, basic("alice", "alice-pw")) for _ in range(2)]
    bob = await issue(runtime, basic("bob", "bob-pw"))
    write_yaml(config_dir / "revoked.yaml", {"tokens": [parts(a1)[1]["jti"]]})
    runtime = load(config_dir, pki, revocation_file="revoked.yaml")
    assert session_reason(await log_in(runtime.login, bearer(a1))) == REVOKED
    assert (await log_in(runtime.login, bearer(a2))).identity is not None
    # Every token of bob's up to now; a login afterwards gets a new, working one.
    cutoff = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(parts(bob)[1]["iat"]))
    (config_dir / "revoked.yaml").write_text(f"users:\n  bob: {cutoff}\n")
    runtime = load(config_dir, pki, revocation_file="revoked.yaml")
    assert session_reason(await log_in(runtime.login, bearer(bob))) == REVOKED
    assert (await log_in(runtime.login, bearer(a2))).identity is not None
    later = tokens_of(runtime).issue(Identity("bob"), Basis("htpasswd", b"x"),
                                     now=parts(bob)[1]["iat"] + 1)  # fmt: skip
    assert not await tokens_of(runtime).revoked(tokens_of(runtime).verify(later.token,
                                                now=parts(bob)[1]["iat"] + 2))  # fmt: skip


async def test_a_user_revoked_until_later_is_given_no_token(config_dir: Path, pki: Path) -> None:
    (config_dir / "revoked.yaml").write_text("users:\n  bob: 2999-01-01T00:00:00Z\n")
    runtime = load(config_dir, pki, revocation_file="revoked.yaml")
    outcome = await log_in(runtime.login, basic("bob", "bob-pw"))
    given = await answer("POST", TOKEN_PATH, outcome, tokens_of(runtime))
    assert given.response.status_code == 403 and given.issued is None
    assert USER_REVOKED in given.response.text


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ("tokens: [abc]\n", "tokens[0]", "not a token id"),
        ("users:\n  bob: yesterday\n", "users.bob", "not an RFC 3339 time"),
        ("users:\n  bob: 2025-01-01T00:00:00\n", "users.bob", "needs a time zone"),
        ("users:\n  bob: 2025-01-01\n", "users.bob", "must be a time"),
        ("user: {}\n", "user", "unknown key"),
    ],
)
def test_revocation_file_errors(tmp_path: Path, text: str, key: str, message: str) -> None:
    (tmp_path / "revoked.yaml").write_text(text)
    with pytest.raises(ConfigError) as e:
        RevocationList(tmp_path / "revoked.yaml")
    assert f"revoked.yaml: {key}: {message}" in str(e.value)


# -- lock-out: a token this proxy signed is no guess --------------------------------------------


async def test_refused_tokens_the_proxy_signed_are_not_counted_as_guesses(
    config_dir: Path, pki: Path
) -> None:
    runtime = load(config_dir, pki, ttl_seconds=1)
    token = await issue(runtime, basic("alice", "alice-pw"))
    time.sleep(1.1)  # the scenario: the token's 1 s runs out
    for _ in range(60):  # more than the 50 failures an address may make
        assert session_reason(await log_in(runtime.login, bearer(token))) == EXPIRED
    assert (await log_in(runtime.login, basic("alice", "alice-pw"))).identity is not None
    for _ in range(60):
        outcome = await log_in(runtime.login, bearer(token[:-4] + "AAAA"))
    assert outcome.reason == "locked out"


# -- the token endpoint -------------------------------------------------------------------------


def test_own_paths() -> None:
    for path in ("/kube-front-proxy/v1/token", "/kube-front-proxy/v1/token?x=1",
                 "/kube-front-proxy/", "/kube-front-proxy", "/kube-front-proxy/other"):  # fmt: skip
        assert is_own_path(path), path
    for path in (
        "/api",
        "/kube-front-proxy-x",
        "/x/kube-front-proxy/v1/token",
        "/?/kube-front-proxy/",
    ):
        assert not is_own_path(path), path


async def test_the_endpoint_answers(config_dir: Path, pki: Path) -> None:
    runtime = load(config_dir, pki)
    tokens = tokens_of(runtime)
    outcome = await log_in(runtime.login, basic("alice", "alice-pw"))
    given = await answer("POST", TOKEN_PATH + "?ignored=1", outcome, tokens)
    assert given.response.status_code == 200
    assert given.response.headers["Cache-Control"] == "no-store"
    body = json.loads(given.response.content or b"")
    assert given.issued is not None
    placeholder = body["status"]["token"]
    # The flow's body: the placeholder, as long as the token, so that only bytes change.
    assert placeholder.encode() == given.placeholder
    assert len(placeholder) == len(given.issued.token) and placeholder != given.issued.token
    assert placeholder.startswith("<session token: withheld from flows and logs>")
    assert body == {
        "apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential", "spec": {},
        "status": {"token": placeholder, "expirationTimestamp": time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(given.issued.expires_at))}}  # fmt: skip

    for method in ("GET", "PUT", "DELETE"):
        refused = await answer(method, TOKEN_PATH, outcome, tokens)
        assert refused.response.status_code == 405 and refused.issued is None
        assert refused.response.headers["Allow"] == "POST"
    assert (await answer("POST", "/kube-front-proxy/v2/x", outcome, tokens)).response.status_code \
        == 404  # fmt: skip
    disabled = await answer("POST", TOKEN_PATH, outcome, None)
    assert disabled.response.status_code == 404 and NOT_ENABLED in disabled.response.text


async def test_a_session_token_cannot_be_renewed_with_itself(config_dir: Path, pki: Path) -> None:
    runtime = load(config_dir, pki)
    token = await issue(runtime, basic("alice", "alice-pw"))
    outcome = await log_in(runtime.login, bearer(token))
    assert outcome.identity is not None
    given = await answer("POST", TOKEN_PATH, outcome, tokens_of(runtime))
    assert given.response.status_code == 403 and given.issued is None
    assert NO_RENEWAL in given.response.text


def test_withheld_secrets_are_revealed_once() -> None:
    withheld, flow = Withheld(), tflow.tflow()
    with pytest.raises(ValueError):
        withheld.hold(flow, b"<x>", b"secret")
    withheld.hold(flow, b"<p****>", b"secret!")
    assert withheld.reveal(flow, b'{"t":"<p****>"}') == b'{"t":"secret!"}'
    assert withheld.reveal(flow, b'{"t":"<p****>"}') == b'{"t":"<p****>"}'
    withheld.hold(flow, b"<p****>", b"secret!")
    del flow
    gc.collect()
    assert len(withheld) == 0  # a flow never sent takes its secret with it


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key_text", "message"),
    [
        (base64.b64encode(b"k" * 31).decode(), "31 bytes; at least 32 are needed"),
        ("not base64 at all!", "not base64 text"),
        ("", "0 bytes; at least 32"),
    ],
)
def test_key_file_errors_name_the_key_and_never_show_it(
    config_dir: Path, pki: Path, key_text: str, message: str
) -> None:
    (config_dir / "session-key").write_text(key_text)
    with pytest.raises(ConfigError) as e:
        load(config_dir, pki)
    text = str(e.value)
    assert "authn.session_tokens.signing_key_file" in text and message in text
    assert not key_text or key_text not in text


def test_key_file_may_be_wrapped_like_openssl_output(config_dir: Path, pki: Path) -> None:
    wrapped = base64.encodebytes(os.urandom(64)).decode()  # lines of 76 characters
    (config_dir / "session-key").write_text(wrapped)
    assert load(config_dir, pki).login.session_tokens is not None


@pytest.mark.parametrize(
    ("session", "key", "message"),
    [
        ({"ttl_seconds": 0}, "authn.session_tokens.ttl_seconds", "between 1 and"),
        ({"ttl_seconds": 32 * 86400}, "authn.session_tokens.ttl_seconds", "between 1 and"),
        ({"ttl": 5}, "authn.session_tokens.ttl", "unknown key"),
        ({"signing_key_file": None}, "authn.session_tokens.signing_key_file", "missing"),
        ({"revocation_file": "nope.yaml"}, "", "cannot read file"),
    ],
)
def test_config_errors(
    config_dir: Path, pki: Path, session: dict[str, Any], key: str, message: str
) -> None:
    config = proxy_config(pki, 6443, 8443, authn={"tokens": "tokens.csv", "session_tokens": {
        "signing_key_file": "session-key", **session}})  # fmt: skip
    with pytest.raises(ConfigError) as e:
        build_runtime(write_yaml(config_dir / "config.yaml", config))
    assert key in str(e.value) and message in str(e.value)


def test_session_tokens_alone_are_no_way_to_log_in(config_dir: Path, pki: Path) -> None:
    config = proxy_config(pki, 6443, 8443)
    config["authn"] = {"session_tokens": {"signing_key_file": "session-key"}}
    with pytest.raises(ConfigError, match="configure at least one of"):
        build_runtime(write_yaml(config_dir / "config.yaml", config))


def test_order_and_watched_files(config_dir: Path, pki: Path) -> None:
    write_yaml(config_dir / "revoked.yaml", {})
    runtime = load(config_dir, pki, revocation_file="revoked.yaml")
    assert runtime.settings.authn_order == ("token", "session-token", "htpasswd")
    assert {config_dir / "session-key", config_dir / "revoked.yaml"} <= set(runtime.watched_files)
    config = proxy_config(pki, 6443, 8443, authn={
        "order": ["htpasswd", "token"], "tokens": "tokens.csv",
        "session_tokens": {"signing_key_file": "session-key"}})  # fmt: skip
    with pytest.raises(ConfigError, match="configured but not listed: session-token"):
        build_runtime(write_yaml(config_dir / "config.yaml", config))


# -- certificates and ID tokens -------------------------------------------------------------------


def login_with(tmp_path: Path, **authenticators: Any) -> Login:
    if not (tmp_path / "session-key").exists():
        new_key(tmp_path)
    config = SessionTokenSettings(tmp_path / "c.yaml", "authn.session_tokens",
                                    tmp_path / "session-key", 3600, None)  # fmt: skip
    return Login(
        users={"carol": Identity("carol", ("from-users-yaml",))},
        writer=IdentityHeaderWriter(HeaderNames()),
        cache=CredentialCache(300, 100),
        lockout=Lockout(LockoutPolicy()),
        order=("x509", "session-token", "oidc"),
        session_tokens=SessionTokens(config),
        **authenticators,
    )


async def test_a_certificate_login_gets_a_token_that_ends_with_the_certificate(
    tmp_path: Path,
) -> None:
    ends = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=10)
    carol = issue_certificate(USERS_CA, "carol", organizations=["devs"], not_after=ends)
    login = login_with(tmp_path, client_certs=ClientCertAuthenticator([USERS_CA.cert]))
    outcome = await login.authenticate([], CLIENT, [carol.cert])
    given = await answer("POST", TOKEN_PATH, outcome, login.session_tokens)
    assert given.issued is not None
    assert given.issued.expires_at == int(ends.timestamp())
    # The certificate's groups ride in the token (no file has them); users.yaml's are added.
    used = await login.authenticate([bearer(given.issued.token)], CLIENT)
    assert used.identity == Identity("carol", ("devs", "from-users-yaml"))
    # Another set of user CAs: the token is void.
    other = login_with(tmp_path, client_certs=ClientCertAuthenticator([OTHER_CA.cert]))
    assert session_reason(await other.authenticate([bearer(given.issued.token)], CLIENT)) == VOIDED


async def test_an_id_token_login_gets_a_token_that_ends_with_the_id_token(tmp_path: Path) -> None:
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [KEY.as_dict(private=False)]}))
    issuer = oidc_section(tmp_path, {"issuer_url": ISSUER, "audiences": ["kfp"],
                                        "jwks_file": str(tmp_path / "jwks.json"),
                                        "groups_claim": "groups"})  # fmt: skip
    login = login_with(tmp_path, oidc=OidcAuthenticator(issuer))
    exp = int(time.time()) + 120
    id_token = signed(KEY, {"alg": "RS256", "kid": "k1"}, {
        "iss": ISSUER, "aud": "kfp", "sub": "dana", "exp": exp, "groups": ["g1"]})  # fmt: skip
    outcome = await login.authenticate([bearer(id_token)], CLIENT)
    assert outcome.identity is not None, outcome.reason
    given = await answer("POST", TOKEN_PATH, outcome, login.session_tokens)
    assert given.issued is not None and given.issued.expires_at == exp
    used = await login.authenticate([bearer(given.issued.token)], CLIENT)
    assert used.identity == Identity(f"{ISSUER}#dana", ("g1",))
    assert used.authenticator == "session-token"
    # Another issuer configured: the token is void.
    another = oidc_section(tmp_path, {"issuer_url": "https://other.example", "audiences": ["kfp"],
                                        "jwks_file": str(tmp_path / "jwks.json")})  # fmt: skip
    other = login_with(tmp_path, oidc=OidcAuthenticator(another))
    refused = await other.authenticate([bearer(given.issued.token)], CLIENT)
    assert refused.identity is None and refused.reason.startswith("session-token: " + VOIDED)


def test_signatures_are_checked_once_and_only_signed_tokens_are_remembered(
    config_dir: Path, pki: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session_tokens, "MAX_VERIFIED", 3)
    tokens = tokens_of(load(config_dir, pki, ttl_seconds=60))
    issued = [tokens.issue(Identity(f"u{i}"), Basis("htpasswd", b"h"), now=1000) for i in range(4)]
    calls: list[str] = []
    check = tokens._signed_claims
    monkeypatch.setattr(tokens, "_signed_claims", lambda t: calls.append(t) or check(t))
    for _ in range(3):
        assert tokens.verify(issued[0].token, now=1001).user == "u0"
    assert len(calls) == 1
    for token in issued[1:]:
        tokens.verify(token.token, now=1001)
    assert len(tokens._verified) == 3  # bounded: u0, the least recently used, went first
    for _ in range(5):
        with pytest.raises(SessionTokenRejected):
            tokens.verify(issued[1].token[:-3] + "AAA", now=1001)
    assert len(tokens._verified) == 3
    # A remembered signature is no remembered validity: the times are checked every time.
    with pytest.raises(SessionTokenRejected, match=EXPIRED):
        tokens.verify(issued[3].token, now=1060)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory, pki: Path) -> SessionTokens:
    directory = tmp_path_factory.mktemp("fuzz-session-tokens")
    htpasswd_add(directory / "htpasswd", "alice", "alice-pw", "apr1")
    write_yaml(directory / "users.yaml", {})
    (directory / "tokens.csv").write_text("t,carol,1\n")
    new_key(directory)
    return tokens_of(load(directory, pki))


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(fuzz_tokens)
def test_any_other_token_is_a_refusal(fuzzed: SessionTokens, token: str) -> None:
    with pytest.raises(SessionTokenRejected) as e:
        fuzzed.verify(token)
    assert e.value.reason == INVALID


async def test_the_shared_revocation_set_is_checked_and_fed_from_the_file(
    config_dir: Path, pki: Path
) -> None:
    write_yaml(config_dir / "revoked.yaml", {})
    runtime = load(config_dir, pki, revocation_file="revoked.yaml")
    first, second = [await issue(runtime, basic("alice", "alice-pw")) for _ in range(2)]
    # Revoked by another process (state.redis): refused here too.
    shared = MemoryRevocations()
    assert await shared.revoke(parts(first)[1]["jti"], ttl=60)
    here = SessionTokens(tokens_of(runtime).settings, shared)
    login = Login(users={}, writer=runtime.writer, cache=runtime.login.cache,
                  lockout=runtime.login.lockout, order=("session-token", "htpasswd"),
                  htpasswd=runtime.login.htpasswd, session_tokens=here)  # fmt: skip
    assert session_reason(await log_in(login, bearer(first))) == REVOKED
    assert (await log_in(login, bearer(second))).identity is not None
    # The file's ids go into the shared set, for the tokens' lifetime at most.
    write_yaml(config_dir / "revoked.yaml", {"tokens": [parts(second)[1]["jti"]]})
    settings = tokens_of(load(config_dir, pki, revocation_file="revoked.yaml")).settings
    await SessionTokens(settings, shared).share_revocations()
    assert await shared.revoked(parts(second)[1]["jti"])
    assert (await log_in(login, bearer(second))).reason.endswith(REVOKED)
