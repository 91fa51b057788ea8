"""An `identity` config that does not match the API server's --requestheader-* flags.

The API server reads identity from the header names it publishes in
kube-system/extension-apiserver-authentication, whatever the proxy's config says. With
`identity.group_headers: [X-Auth-Group]` in front of an API server reading X-Remote-Group, a
user's own `X-Remote-Group: system:masters` reached it; with `uid_headers: []`, so did a
client-sent `X-Remote-Uid`. The proxy read the ConfigMap at start-up, saw the mismatch, logged a
warning and served. Now every name and prefix the API server reads, and always the default
X-Remote-* names, are stripped from client requests; a mismatch that would cost users their
identity, or a ConfigMap that cannot be read, stops the proxy from serving (503 Status) until it
is fixed, and its /readyz says why.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.configs import write_yaml
from tests.support.harness import Emulator, Proxy, start_emulator, start_proxy_for
from tests.support.processes import free_port
from tests.support.users import basic_header, password_of
from tests.support.waiting import wait_until

USER = "apr1-user"  # a user without groups, in the htpasswd file write_users makes
SPOOFS = [
    ("X-Remote-User", "system:admin"),
    ("x-remote-group", "system:masters"),
    ("X-Remote-Uid", "0"),
    ("X-REMOTE-EXTRA-scopes", "all"),
    ("X-Group-2", "system:masters"),
    ("X-User-2", "system:admin"),
    ("X-Auth-Group", "system:masters"),
]


@pytest.fixture
def setup(
    pki: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Emulator, Proxy, int]]:
    """An emulator with the given flags, and a proxy with the given overrides in front of it."""
    flags, overrides = request.param
    emulator = start_emulator(pki, tmp_path, "-q", *(f.format(pki=pki) for f in flags))
    metrics_port = free_port()
    try:
        proxy = start_proxy_for(
            pki, tmp_path / "proxy", emulator.port,
            metrics={"listen": f"127.0.0.1:{metrics_port}"}, **overrides,
        )  # fmt: skip
    except BaseException:
        emulator.process.stop()
        raise
    yield emulator, proxy, metrics_port
    proxy.process.stop()
    emulator.process.stop()


def attack(proxy: Proxy) -> tuple[int, dict[str, Any]]:
    status, _, body = proxy.raw(
        "GET", "/api/v1/namespaces/default/pods", [basic_header(USER, password_of(USER)), *SPOOFS]
    )
    return status, json.loads(body)


def users_requests(emulator: Emulator) -> list[dict[str, Any]]:
    return [r for r in emulator.requests() if "extension-apiserver-authentication" not in r["path"]]


def received(record: dict[str, Any]) -> list[str]:
    return sorted({name.lower() for name, _ in record["headers"]})


def readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def assert_not_serving(setup: tuple[Emulator, Proxy, int], reason: str) -> None:
    emulator, proxy, metrics_port = setup
    status, body = attack(proxy)
    assert (status, body.get("reason")) == (503, "ServiceUnavailable"), body
    assert "not serving" in body["message"] and reason not in body["message"]
    assert users_requests(emulator) == []
    ready, why = readyz(metrics_port)
    assert ready == 503 and reason in why, why
    assert reason in proxy.process.output()
    assert "kube-front-proxy: not serving: every request gets 503" in proxy.process.output()


def assert_served_as_itself(emulator: Emulator, status: int, read: tuple[str, ...] = ()) -> None:
    """Served, as itself: none of the spoofed names the API server reads (the defaults and
    `read`) reached it; only the proxy's X-Remote-User."""
    assert status == 200
    [record] = users_requests(emulator)[-1:]
    user = record["authentication"]["user"]
    assert (user["username"], user["groups"], user.get("uid")) == (
        USER, ["system:authenticated"], "")  # fmt: skip
    sent = received(record)
    for name in ("x-remote-group", "x-remote-uid", "x-remote-extra-scopes", *read):
        assert name not in sent, name
    assert [v for n, v in record["headers"] if n.lower() == "x-remote-user"] == [USER]


@pytest.mark.parametrize(
    "setup", [([], {"identity": {"group_headers": ["X-Auth-Group"]}})], indirect=True
)
def test_a_group_header_the_api_server_does_not_read_stops_the_proxy_until_fixed(
    setup: tuple[Emulator, Proxy, int],
) -> None:
    emulator, proxy, metrics_port = setup
    assert_not_serving(setup, "identity.group_headers")
    # The operator fixes the config: the reload is checked again, and the proxy serves.
    config = yaml.safe_load(proxy.config.read_text())
    config["identity"]["group_headers"] = ["X-Remote-Group"]
    write_yaml(proxy.config, config)
    wait_until(lambda: attack(proxy)[0] != 503, 20, "still 503 after the fix", interval=0.2)
    status, _ = attack(proxy)
    assert_served_as_itself(emulator, status)
    assert readyz(metrics_port)[0] == 200


@pytest.mark.parametrize(
    "setup",
    [(["--requestheader-group-headers", "X-Remote-Group,X-Group-2",
       "--requestheader-username-headers", "X-Remote-User,X-User-2"], {})],
    indirect=True,
)  # fmt: skip
def test_every_name_the_api_server_reads_is_stripped_whatever_the_config_lists(
    setup: tuple[Emulator, Proxy, int],
) -> None:
    emulator, proxy, metrics_port = setup
    status, _ = attack(proxy)
    assert_served_as_itself(emulator, status, read=("x-group-2", "x-user-2"))
    assert readyz(metrics_port)[0] == 200
    assert "X-Group-2, which identity.group_headers does not list" in proxy.process.output()


@pytest.mark.parametrize(
    "setup", [([], {"identity": {"uid_headers": []}, "authn": {"users": None}})], indirect=True
)
def test_no_uid_in_the_config_still_strips_the_uid_the_api_server_reads(
    setup: tuple[Emulator, Proxy, int],
) -> None:
    emulator, proxy, _ = setup
    status, _ = attack(proxy)
    assert_served_as_itself(emulator, status)


CUSTOM = {
    "username_headers": ["X-Auth-User"],
    "group_headers": ["X-Auth-Group"],
    "extra_headers_prefixes": ["X-Auth-Extra-"],
    "uid_headers": ["X-Auth-Uid"],
}


@pytest.mark.parametrize(
    "setup",
    [(["--requestheader-username-headers", "X-Auth-User",
       "--requestheader-group-headers", "X-Auth-Group",
       "--requestheader-extra-headers-prefix", "X-Auth-Extra-",
       "--requestheader-uid-headers", "X-Auth-Uid"], {"identity": CUSTOM})],
    indirect=True,
)  # fmt: skip
def test_the_default_names_are_stripped_under_custom_ones(
    setup: tuple[Emulator, Proxy, int],
) -> None:
    emulator, proxy, _ = setup
    status, _ = attack(proxy)
    assert status == 200
    [record] = users_requests(emulator)
    assert record["authentication"]["user"]["username"] == USER
    assert not [n for n, _ in record["headers"] if n.lower().startswith("x-remote-")]
    assert [v for n, v in record["headers"] if n.lower() == "x-auth-user"] == [USER]
    assert not [n for n, _ in record["headers"] if n.lower() in ("x-auth-group", "x-auth-uid")]


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ((["--authorization-mode", "AlwaysDeny"], {}), "answered 403 Forbidden"),
        ((["--requestheader-username-headers", "X-Other"], {}), "did not take the proxy"),
        ((["--requestheader-client-ca-file", "{pki}/ca.crt"], {}), "did not take the proxy"),
        ((["--requestheader-extra-headers-prefix", "X-Remote-"], {}),
         "identity.extra_headers_prefixes"),
    ],
    indirect=["setup"],
    ids=["configmap-forbidden", "username-header-not-read", "other-front-proxy-ca", "extra-prefix"],
)  # fmt: skip
def test_what_the_proxy_cannot_confirm_it_does_not_serve(
    setup: tuple[Emulator, Proxy, int], reason: str
) -> None:
    assert_not_serving(setup, reason)
