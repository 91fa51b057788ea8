"""Property-based tests (hypothesis) of the logins whose values come with the request: OIDC
ID tokens and identities from certificates or claims. Nothing but a refusal may come out of a
bad token, and no value, however odd, may inject or duplicate an identity header."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc.jwk import RSAKey
from mitmproxy import http
from mitmproxy.net.http import http1

from kube_front_proxy.authn.login import Rejected, checked
from kube_front_proxy.authn.oidc import OidcAuthenticator, TokenRejected
from kube_front_proxy.identity.headers import Identity, IdentityHeaderWriter

from .test_fuzz import NAMES, parsed
from .test_oidc import load

ISSUER = "https://issuer.example"
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})
any_text = st.text(max_size=12)


@pytest.fixture(scope="module")
def oidc(tmp_path_factory: pytest.TempPathFactory) -> OidcAuthenticator:
    directory = tmp_path_factory.mktemp("fuzz-oidc")
    (directory / "jwks.json").write_text(json.dumps({"keys": [KEY.as_dict(private=False)]}))
    return OidcAuthenticator(load(directory, {
        "issuer_url": ISSUER, "audiences": ["kfp"], "jwks_file": str(directory / "jwks.json"),
        "groups_claim": "groups"}))  # fmt: skip


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(any_text, children,
                                                                      max_size=4),
    max_leaves=8,
)  # fmt: skip
claims = st.fixed_dictionaries({}, optional={
    "iss": st.sampled_from([ISSUER, ISSUER + "/"]) | json_value,
    "aud": st.sampled_from(["kfp", ["kfp", "x"]]) | json_value,
    "exp": st.integers(0, 2**40) | json_value, "nbf": json_value, "sub": json_value,
    "groups": json_value}) | json_value  # fmt: skip
header = st.fixed_dictionaries({}, optional={
    "alg": st.sampled_from(["RS256", "none", "HS256", "ES256"]) | json_value,
    "kid": st.sampled_from(["k1", "k2"]) | json_value, "typ": json_value}) | json_value  # fmt: skip
jwt_shaped = st.builds(
    lambda h, c, sig: f"{b64(json.dumps(h).encode())}.{b64(json.dumps(c).encode())}.{b64(sig)}",
    header,
    claims,
    st.binary(max_size=64),
)
tokens = st.one_of(st.text(max_size=80), jwt_shaped)


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(tokens)
def test_a_token_is_a_user_or_a_refusal(oidc: OidcAuthenticator, token: str) -> None:
    try:
        identity = asyncio.run(oidc.authenticate(token))
    except TokenRejected as e:
        assert token not in e.reason or len(token) < 4
        return
    # Only a token signed with KEY can get here, and random ones are never signed.
    raise AssertionError(f"accepted {identity}")


def test_the_fuzzer_can_reach_a_login(oidc: OidcAuthenticator) -> None:
    """The property above is not vacuous: a well-formed, signed token does log in."""
    from joserfc import jwt

    token = jwt.encode({"alg": "RS256", "kid": "k1"},
                       {"iss": ISSUER, "aud": "kfp", "exp": 2**40, "sub": "u"}, KEY)  # fmt: skip
    assert asyncio.run(oidc.authenticate(token)).user == f"{ISSUER}#u"


raw = st.text(max_size=10)
identities = st.builds(
    Identity,
    user=raw,
    groups=st.lists(raw, max_size=4).map(tuple),
    uid=raw,
    extra=st.dictionaries(raw, st.lists(raw, min_size=1, max_size=2).map(tuple), max_size=2),
)


@settings(max_examples=500, deadline=None)
@given(identities)
def test_a_checked_identity_reaches_the_api_server_unchanged(who: Identity) -> None:
    try:
        safe = checked(who)
    except Rejected:
        return
    writer = IdentityHeaderWriter(NAMES)
    request = http.Request.make("GET", "https://api:6443/api", headers={"Host": "api"})
    writer.apply(request.headers, writer.lines_for(safe))
    # As bytes on the wire, read back by a strict HTTP/1.1 parser, as the API server would.
    parser = h11.Connection(h11.SERVER)
    parser.receive_data(http1.assemble_request_head(request))
    event = parser.next_event()
    assert isinstance(event, h11.Request), event
    user: Any = parsed(list(event.headers.raw_items()))
    assert user is not None
    assert (user.name, user.uid) == (who.user, who.uid)
    assert user.groups == tuple(g for g in who.groups if g)
    assert dict(user.extra) == dict(who.extra)
