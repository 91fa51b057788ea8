"""Hypothesis strategies for bearer tokens: any text, and JWT-shaped ones with odd headers and
claims for an issuer whose key (KEY) the test trusts."""

from __future__ import annotations

import base64
import json

from hypothesis import strategies as st
from joserfc.jwk import RSAKey

ISSUER = "https://issuer.example"
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})
any_text = st.text(max_size=12)


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
