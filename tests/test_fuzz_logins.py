"""Property-based tests (hypothesis) of the logins whose values come with the request: OIDC
ID tokens and identities from certificates or claims. Nothing but a refusal may come out of a
bad token, and no value, however odd, may inject or duplicate an identity header."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mitmproxy import http
from mitmproxy.net.http import http1

from kube_front_proxy.authn.login import Rejected, checked
from kube_front_proxy.authn.oidc import OidcAuthenticator, TokenRejected
from kube_front_proxy.identity.headers import Identity, IdentityHeaderWriter
from tests.support.api_server_view import NAMES, parsed
from tests.support.configs import oidc_section
from tests.support.token_strategies import ISSUER, KEY, tokens


@pytest.fixture(scope="module")
def oidc(tmp_path_factory: pytest.TempPathFactory) -> OidcAuthenticator:
    directory = tmp_path_factory.mktemp("fuzz-oidc")
    (directory / "jwks.json").write_text(json.dumps({"keys": [KEY.as_dict(private=False)]}))
    return OidcAuthenticator(oidc_section(directory, {
        "issuer_url": ISSUER, "audiences": ["kfp"], "jwks_file": str(directory / "jwks.json"),
        "groups_claim": "groups"}))  # fmt: skip


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
