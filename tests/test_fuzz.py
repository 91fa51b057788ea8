"""Property-based tests (hypothesis) of the parsers and the identity-header writer.

The writer's output is read back with the emulator's port of k8s.io/apiserver's requestheader
authenticator: whatever the identity and whatever a client sent, the API server must see
exactly the configured identity, nothing injected, nothing duplicated.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mitmproxy.http import Headers

from kube_front_proxy.authn.credentials import Credentials, MalformedCredentials, parse_basic
from kube_front_proxy.authn.users import header_value_problem, load_users
from kube_front_proxy.config.errors import ConfigError
from kube_front_proxy.config.settings import FileRef
from kube_front_proxy.identity.headers import Identity, IdentityHeaderWriter
from tests.support.api_server_view import NAMES, parsed

# Values a header can carry unchanged: what users.yaml accepts.
value = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20).filter(
    lambda v: header_value_problem(v) is None
)
nonempty = value.filter(bool)
# Extra keys: the API server lowercases them before unescaping, which the writer escapes for.
identity = st.builds(
    Identity,
    user=nonempty,
    groups=st.lists(nonempty, max_size=4).map(tuple),
    uid=value,
    extra=st.dictionaries(nonempty, st.lists(value, min_size=1, max_size=3).map(tuple),
                          max_size=3),
)  # fmt: skip

IDENTITY_NAMES = ["X-Remote-User", "X-Remote-Group", "X-Remote-Uid", "X-Remote-Extra-scopes",
                  "X-Remote-Extra-", "X-Remote-Extra-a%2Fb", "Authorization"]  # fmt: skip


def case_variants(name: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
        lambda flips: "".join(
            c.upper() if f else c.lower() for c, f in zip(name, flips, strict=True)
        )
    )


spoofed_header = (
    st.sampled_from(IDENTITY_NAMES)
    .flatmap(case_variants)
    .flatmap(lambda name: st.tuples(st.just(name), value))
)
other_header = st.tuples(st.sampled_from(["Accept", "User-Agent", "X-Remote", "X-Remotes-User"]),
                         value)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(identity, st.lists(st.one_of(spoofed_header, other_header), max_size=12))
def test_the_api_server_reads_exactly_the_identity(
    who: Identity, client: list[tuple[str, str]]
) -> None:
    writer = IdentityHeaderWriter(NAMES)
    headers = Headers([(n.encode(), v.encode()) for n, v in client])
    writer.apply(headers, writer.lines_for(who))
    user = parsed(list(headers.fields))
    assert user is not None
    assert user.name == who.user
    assert user.uid == who.uid
    assert user.groups == who.groups
    assert dict(user.extra) == dict(who.extra)
    # One header line per value: nothing a client sent survived, nothing is doubled.
    lowered = [n.lower() for n, _ in headers.fields]
    assert lowered.count(b"x-remote-user") == 1
    assert lowered.count(b"authorization") == 0


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=40), st.binary(max_size=40).map(
    lambda b: "Basic " + base64.b64encode(b).decode())), max_size=3))  # fmt: skip
def test_authorization_parser_never_fails_unexpectedly(values: list[str]) -> None:
    try:
        result = parse_basic(values)
    except MalformedCredentials:
        return
    assert result is None or isinstance(result, Credentials)


yaml_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10))
yaml_value = st.recursive(
    yaml_scalar,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), children, max_size=3)
    ),
    max_leaves=10,
)
users_doc = st.one_of(
    yaml_value,
    st.fixed_dictionaries({"users": st.dictionaries(
        st.text(max_size=8),
        st.fixed_dictionaries({}, optional={"groups": yaml_value, "uid": yaml_value,
                                            "extra": yaml_value, "other": yaml_value}),
        max_size=3)}),
)  # fmt: skip


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(users_doc)
def test_users_loader_gives_identities_or_a_config_error(tmp_path: Path, doc: Any) -> None:
    path = tmp_path / "users.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    ref = FileRef(path, tmp_path / "config.yaml", "authn.users")
    try:
        users = load_users(ref, NAMES)
    except ConfigError as e:
        assert e.file == str(path)
        return
    for name, who in users.items():
        assert who.user == name
        for v in (who.user, who.uid, *who.groups, *(x for vs in who.extra.values() for x in vs)):
            assert header_value_problem(v) is None


@pytest.mark.parametrize("bad", ["a\r\nX-Remote-User: admin", "a\nb", "a\x00b", " a", "a\t"])
def test_injection_attempts_are_refused(bad: str) -> None:
    assert header_value_problem(bad) is not None
