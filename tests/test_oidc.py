"""OIDC ID tokens, verified against a real issuer on loopback HTTPS (tests/support/oidc_issuer.py).

The rules are kube-apiserver's (plugin/pkg/authenticator/token/oidc/oidc.go) and go-oidc v2's
(verify.go, jwks.go); each test names the rule it holds the authenticator to.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kube_front_proxy.authn.oidc import OidcAuthenticator, TokenRejected, looks_like_jwt
from kube_front_proxy.authn.oidc_config import OidcSettings
from kube_front_proxy.config.errors import ConfigError
from kube_front_proxy.identity.headers import Identity
from tests.support.configs import merge, oidc_section
from tests.support.oidc_issuer import AUDIENCE, OidcIssuer, serving


@pytest.fixture
def issuer(tmp_path: Path) -> Iterator[OidcIssuer]:
    with serving(tmp_path / "issuer") as running:
        yield running


def settings(issuer: OidcIssuer, tmp_path: Path, **overrides: Any) -> OidcSettings:
    base = {
        "issuer_url": issuer.issuer_url,
        "audiences": [AUDIENCE],
        "ca": str(issuer.ca_file),
        "signing_algs": ["RS256", "ES256"],
        "groups_claim": "groups",
    }
    return oidc_section(tmp_path, merge(base, overrides))


def authenticator(issuer: OidcIssuer, tmp_path: Path, **overrides: Any) -> OidcAuthenticator:
    return OidcAuthenticator(settings(issuer, tmp_path, **overrides))


async def rejected(auth: OidcAuthenticator, token: str) -> str:
    with pytest.raises(TokenRejected) as e:
        await auth.authenticate(token)
    assert token not in e.value.reason
    return e.value.reason


async def test_rs256_and_es256_tokens_log_in(issuer: OidcIssuer, tmp_path: Path) -> None:
    auth = authenticator(issuer, tmp_path)
    claims = issuer.claims(groups=["developers", "ops"])
    # kube maps no uid and no extras from plain --oidc-* settings: Identity's defaults.
    expected = Identity(user=f"{issuer.issuer_url}#alice", groups=("developers", "ops"))
    assert await auth.authenticate(issuer.token(claims, signer="rsa-1")) == expected
    assert await auth.authenticate(issuer.token(claims, signer="ec-1")) == expected
    assert (issuer.discovery_fetches, issuer.jwks_fetches) == (1, 1)


@pytest.mark.parametrize(
    ("config", "user"),
    [
        ({}, "{issuer}#alice"),  # unset prefix, claim sub: the issuer URL and '#'
        ({"username_claim": "email"}, "alice@example.com"),  # unset prefix, claim email: none
        ({"username_prefix": "-"}, "alice"),  # '-': no prefix at all
        ({"username_prefix": "oidc:"}, "oidc:alice"),
        ({"username_claim": "email", "username_prefix": "corp:"}, "corp:alice@example.com"),
    ],
)
async def test_username_prefix_follows_kube_flags(
    issuer: OidcIssuer, tmp_path: Path, config: dict[str, Any], user: str
) -> None:
    identity = await authenticator(issuer, tmp_path, **config).authenticate(issuer.token())
    assert identity.user == user.format(issuer=issuer.issuer_url)


@pytest.mark.parametrize(
    ("groups", "prefix", "expected"),
    [
        (["a", "b"], "", ("a", "b")),
        ("admins", "", ("admins",)),  # kubernetes#33290: a single string is one group
        (["a", "b"], "oidc:", ("oidc:a", "oidc:b")),
        (None, "oidc:", ()),  # no groups claim in the token: no groups
    ],
)
async def test_groups_claim(
    issuer: OidcIssuer, tmp_path: Path, groups: Any, prefix: str, expected: tuple[str, ...]
) -> None:
    auth = authenticator(issuer, tmp_path, groups_prefix=prefix or None)
    identity = await auth.authenticate(issuer.token(issuer.claims(groups=groups)))
    assert identity.groups == expected


async def test_groups_are_ignored_without_groups_claim(issuer: OidcIssuer, tmp_path: Path) -> None:
    auth = authenticator(issuer, tmp_path, groups_claim=None)
    identity = await auth.authenticate(issuer.token(issuer.claims(groups=["system:masters"])))
    assert identity.groups == ()


async def test_email_verified(issuer: OidcIssuer, tmp_path: Path) -> None:
    by_email = authenticator(issuer, tmp_path, username_claim="email")
    unverified = issuer.token(issuer.claims(email_verified=False))
    assert await rejected(by_email, unverified) == "email not verified"
    assert (
        await rejected(by_email, issuer.token(issuer.claims(email_verified="true")))
        == "email_verified claim is not a boolean"
    )
    # Absent is fine (kube checks it only if present), and only the email claim needs it.
    absent = issuer.token(issuer.claims(email_verified=None))
    assert (await by_email.authenticate(absent)).user == "alice@example.com"
    by_sub = authenticator(issuer, tmp_path, username_prefix="-")
    assert (await by_sub.authenticate(unverified)).user == "alice"


async def test_required_claims(issuer: OidcIssuer, tmp_path: Path) -> None:
    auth = authenticator(issuer, tmp_path, required_claims={"tenant": "acme", "env": "prod"})
    ok = issuer.claims(tenant="acme", env="prod")
    assert (await auth.authenticate(issuer.token(ok))).user.endswith("#alice")
    cases = {
        "required claim env missing": issuer.claims(tenant="acme"),
        "required claim env does not match": issuer.claims(tenant="acme", env="dev"),
        "required claim tenant is not a string": issuer.claims(tenant=["acme"], env="prod"),
    }
    for reason, claims in cases.items():
        assert await rejected(auth, issuer.token(claims)) == reason


async def test_bad_tokens_are_rejected_with_their_reason(
    issuer: OidcIssuer, tmp_path: Path
) -> None:
    auth = authenticator(issuer, tmp_path, signing_algs=["RS256"])
    now = int(time.time())
    good = issuer.token()
    header, payload, signature = good.split(".")
    other = issuer.claims(sub="mallory")
    forged_payload = issuer.token(other).split(".")[1]
    cases = {
        issuer.token(issuer.claims(exp=now - 1)): "token expired",
        issuer.token(issuer.claims(exp=None)): "token has no expiry",
        issuer.token(issuer.claims(nbf=now + 120)): "token not yet valid",
        issuer.token(issuer.claims(aud="someone-else")): "wrong audience",
        issuer.token(issuer.claims(aud=None)): "wrong audience",
        issuer.token(issuer.claims(iss="https://evil.example")): "unknown issuer",
        issuer.token(issuer.claims(iss=issuer.issuer_url + "/")): "unknown issuer",
        issuer.unsigned_token(): "signing algorithm none not allowed",
        issuer.hs256_with_public_key(): "signing algorithm HS256 not allowed",
        issuer.token(signer="ec-1"): "signing algorithm ES256 not allowed",
        issuer.token(kid="no-such-key"): "unknown key id",
        f"{header}.{forged_payload}.{signature}": "bad signature",
        f"{header}.{payload}.{signature[:-4]}AAAA": "bad signature",
        issuer.token(issuer.claims(exp="tomorrow")): "malformed token",
        issuer.token(issuer.claims(aud=[AUDIENCE, 7])): "malformed token",
        f"{header}.{payload[:-2]}!!.{signature}": "malformed token",
        "not-a-jwt": "malformed token",
        "a.b.c": "malformed token",
        f"{header}.{payload}": "malformed token",
        issuer.token(issuer.claims(big="x" * 200_000)): "token too large",
    }
    for token, reason in cases.items():
        assert (await rejected(auth, token), token[:40]) == (reason, token[:40])
    assert (await auth.authenticate(good)).user.endswith("#alice")


async def test_exp_infinity_is_not_json(issuer: OidcIssuer, tmp_path: Path) -> None:
    # Python's json reads Infinity; Go's does not. A token that never expires must not exist.
    auth = authenticator(issuer, tmp_path)
    assert await rejected(auth, issuer.token(issuer.claims(exp=float("inf")))) == "malformed token"


async def test_clock_skew_is_go_oidcs(issuer: OidcIssuer, tmp_path: Path) -> None:
    """verify.go: nbf may be up to 1 minute ahead; exp gets no leeway; iat is not compared."""
    auth = authenticator(issuer, tmp_path)
    now = int(time.time())
    assert await auth.authenticate(issuer.token(issuer.claims(nbf=now + 50)))
    assert await rejected(auth, issuer.token(issuer.claims(nbf=now + 70))) == "token not yet valid"
    assert await auth.authenticate(issuer.token(issuer.claims(iat=now + 3600)))
    assert await rejected(auth, issuer.token(issuer.claims(exp=now - 2))) == "token expired"


async def test_audience_may_be_a_list(issuer: OidcIssuer, tmp_path: Path) -> None:
    auth = authenticator(issuer, tmp_path, audiences=["other", AUDIENCE])
    token = issuer.token(issuer.claims(aud=["unrelated", AUDIENCE]))
    assert (await auth.authenticate(token)).user.endswith("#alice")


async def test_names_that_cannot_be_headers_are_refused(issuer: OidcIssuer, tmp_path: Path) -> None:
    auth = authenticator(issuer, tmp_path, username_prefix="-")
    injected = issuer.claims(groups=["dev\r\nX-Remote-Group: system:masters"])
    assert await rejected(auth, issuer.token(injected)) == (
        "group contains a control character (CR, LF, NUL, ...)"
    )
    assert await rejected(auth, issuer.token(issuer.claims(sub=" alice"))) == (
        "user name has leading or trailing whitespace"
    )
    assert (
        await rejected(auth, issuer.token(issuer.claims(sub=""))) == "username claim sub is empty"
    )
    assert await rejected(auth, issuer.token(issuer.claims(sub=None))) == (
        "username claim sub missing or not a string"
    )


async def test_rotation_new_key_after_one_refresh(issuer: OidcIssuer, tmp_path: Path) -> None:
    auth = authenticator(issuer, tmp_path, refresh_min_interval_seconds=0)
    old = issuer.token()
    await auth.authenticate(old)
    new_kid = issuer.rotate(keep_old=False)
    assert (await auth.authenticate(issuer.token(signer=new_kid))).user.endswith("#alice")
    assert issuer.jwks_fetches == 2
    assert await rejected(auth, old) == "unknown key id"  # dropped: refetched once, still gone
    assert (issuer.jwks_fetches, issuer.discovery_fetches) == (3, 1)


async def test_rotation_keeping_the_old_key(issuer: OidcIssuer, tmp_path: Path) -> None:
    auth = authenticator(issuer, tmp_path, refresh_min_interval_seconds=0)
    old = issuer.token()
    await auth.authenticate(old)
    new_kid = issuer.rotate(keep_old=True)
    await auth.authenticate(issuer.token(signer=new_kid))
    await auth.authenticate(old)
    assert issuer.jwks_fetches == 2


async def test_unknown_kid_flood_is_rate_limited(issuer: OidcIssuer, tmp_path: Path) -> None:
    auth = authenticator(issuer, tmp_path, refresh_min_interval_seconds=1)
    await auth.authenticate(issuer.token())
    flood = [issuer.token(kid=f"unknown-{i}") for i in range(50)]

    async def all_rejected() -> list[str]:
        results = await asyncio.gather(
            *(auth.authenticate(t) for t in flood), return_exceptions=True
        )
        return sorted({r.reason for r in results if isinstance(r, TokenRejected)})

    assert await all_rejected() == ["unknown key id"]
    assert issuer.jwks_fetches == 1  # within the interval of the first fetch: none
    await asyncio.sleep(1.1)  # the scenario: refresh_min_interval_seconds (1) passes
    assert await all_rejected() == ["unknown key id"]
    assert issuer.jwks_fetches == 2  # 50 concurrent unknown kids: one fetch
    for token in flood:
        assert await rejected(auth, token) == "unknown key id"
    assert issuer.jwks_fetches == 2


async def test_concurrent_first_requests_share_one_fetch(
    issuer: OidcIssuer, tmp_path: Path
) -> None:
    issuer.delay_seconds = 0.3
    auth = authenticator(issuer, tmp_path)
    tokens = [issuer.token(issuer.claims(sub=f"user{i}")) for i in range(20)]
    identities = await asyncio.gather(*(auth.authenticate(t) for t in tokens))
    assert [i.user.split("#")[1] for i in identities] == [f"user{i}" for i in range(20)]
    assert (issuer.discovery_fetches, issuer.jwks_fetches) == (1, 1)


async def test_issuer_down_keeps_last_good_keys(
    issuer: OidcIssuer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    auth = authenticator(issuer, tmp_path, refresh_min_interval_seconds=0)
    good = issuer.token()
    await auth.authenticate(good)
    issuer.stop()
    unknown = issuer.token(kid="rotated-away")
    with caplog.at_level(logging.INFO, logger="kube_front_proxy"):
        assert await rejected(auth, unknown) == "unknown key id"
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith(
        f"OIDC: cannot fetch keys of {issuer.issuer_url}, keeping the 2 known: "
    )
    assert unknown not in caplog.text and good not in caplog.text
    assert (await auth.authenticate(good)).user.endswith("#alice")


async def test_issuer_down_from_the_start(issuer: OidcIssuer, tmp_path: Path) -> None:
    auth = authenticator(issuer, tmp_path)
    issuer.stop()
    assert await rejected(auth, issuer.token()) == "issuer keys unavailable"


@pytest.mark.parametrize("ca", ["system trust", "another CA"])
async def test_issuer_certificate_is_verified(
    issuer: OidcIssuer, tmp_path: Path, pki: Path, ca: str
) -> None:
    auth = authenticator(issuer, tmp_path, ca=None if ca == "system trust" else str(pki / "ca.crt"))
    assert await rejected(auth, issuer.token()) == "issuer keys unavailable"
    assert issuer.jwks_fetches == 0


async def test_discovery_must_name_the_same_issuer(
    issuer: OidcIssuer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The certificate is valid for localhost too, but the issuer calls itself 127.0.0.1.
    alias = issuer.issuer_url.replace("127.0.0.1", "localhost")
    auth = authenticator(issuer, tmp_path, issuer_url=alias)
    with caplog.at_level(logging.WARNING, logger="kube_front_proxy"):
        assert await rejected(auth, issuer.token(issuer.claims(iss=alias))) == (
            "issuer keys unavailable"
        )
    assert f"discovery names another issuer: '{issuer.issuer_url}'" in caplog.text
    assert issuer.jwks_fetches == 0


async def test_redirect_to_plain_http_is_refused(
    issuer: OidcIssuer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    issuer.keys_redirect = "http://127.0.0.1:9/keys"
    auth = authenticator(issuer, tmp_path)
    with caplog.at_level(logging.WARNING, logger="kube_front_proxy"):
        assert await rejected(auth, issuer.token()) == "issuer keys unavailable"
    assert "redirect to non-https refused" in caplog.text


async def test_issuer_url_with_a_path(tmp_path: Path) -> None:
    with serving(tmp_path / "issuer", path="/realms/acme") as issuer:
        auth = authenticator(issuer, tmp_path)
        assert (await auth.authenticate(issuer.token())).user == f"{issuer.issuer_url}#alice"
        assert issuer.issuer_url.endswith("/realms/acme")


async def test_local_jwks_file_is_never_fetched(issuer: OidcIssuer, tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(issuer.jwks()))
    auth = authenticator(issuer, tmp_path, jwks_file=str(jwks), ca=None)
    assert (await auth.authenticate(issuer.token(signer="ec-1"))).user.endswith("#alice")
    new_kid = issuer.rotate(keep_old=True)
    assert await rejected(auth, issuer.token(signer=new_kid)) == "unknown key id"
    assert (issuer.discovery_fetches, issuer.jwks_fetches) == (0, 0)


def test_looks_like_jwt(issuer: OidcIssuer) -> None:
    assert looks_like_jwt(issuer.token())
    # alg none still goes to the OIDC authenticator, to be refused there by name.
    assert looks_like_jwt(issuer.unsigned_token())
    for other in ("kfp-token-31b7c0e0d6a54f8f", "abc.def.ghi", "a.b", "", "eyJ9.e30.x"):
        assert looks_like_jwt(other) is False, other


@pytest.mark.parametrize(
    ("overrides", "key", "message"),
    [
        ({"issuer_url": None}, "authn.oidc.issuer_url", "missing"),
        ({"issuer_url": "http://idp.example"}, "authn.oidc.issuer_url", "must be an https:// URL"),
        ({"issuer_url": "https://idp.example/?a=b"}, "authn.oidc.issuer_url", "must not have"),
        ({"audiences": []}, "authn.oidc.audiences", "must list at least one"),
        ({"audiences": ["a", "a"]}, "authn.oidc.audiences[1]", "duplicate value 'a'"),
        ({"audiences": "a"}, "authn.oidc.audiences", "must be a list, not a string"),
        ({"signing_algs": ["HS256"]}, "authn.oidc.signing_algs[0]", "must be RS256, RS384"),
        ({"signing_algs": []}, "authn.oidc.signing_algs", "must list at least one"),
        ({"client_id": "x"}, "authn.oidc.client_id", "unknown key"),
        ({"required_claims": {"tier": 1}}, "authn.oidc.required_claims.tier", "must be a string"),
        ({"required_claims": ["tier"]}, "authn.oidc.required_claims", "must be a mapping"),
        ({"groups_claim": None, "groups_prefix": "g:"}, "authn.oidc.groups_prefix", "groups_claim"),
        (
            {"refresh_min_interval_seconds": -1},
            "authn.oidc.refresh_min_interval_seconds",
            "or more",
        ),
        ({"username_claim": ""}, "authn.oidc.username_claim", "must not be empty"),
    ],
)
def test_config_errors_name_the_key(
    tmp_path: Path, overrides: dict[str, Any], key: str, message: str
) -> None:
    base = {"issuer_url": "https://idp.example", "audiences": ["k"], "groups_claim": "groups"}
    with pytest.raises(ConfigError) as e:
        oidc_section(tmp_path, merge(base, overrides))
    assert (e.value.file, e.value.key) == (str(tmp_path / "config.yaml"), key)
    assert message in e.value.message


def test_defaults(tmp_path: Path) -> None:
    s = oidc_section(tmp_path, {"issuer_url": "https://idp.example", "audiences": ["k"]})
    assert (s.username_claim, s.username_prefix) == ("sub", "https://idp.example#")
    assert (s.groups_claim, s.groups_prefix, dict(s.required_claims)) == (None, "", {})
    assert (s.signing_algs, s.refresh_min_interval, s.ca, s.jwks_file) == (
        ("RS256",),
        10.0,
        None,
        None,
    )


@pytest.mark.parametrize("key", ["ca", "jwks_file"])
def test_unusable_files_name_the_key(tmp_path: Path, key: str) -> None:
    (tmp_path / "junk.pem").write_text("not a certificate, not JSON")
    s = oidc_section(
        tmp_path, {"issuer_url": "https://idp.example", "audiences": ["k"], key: "junk.pem"}
    )
    with pytest.raises(ConfigError) as e:
        OidcAuthenticator(s)
    assert e.value.key == f"authn.oidc.{key}"
    assert str(tmp_path / "junk.pem") in e.value.message
