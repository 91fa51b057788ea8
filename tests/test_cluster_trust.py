"""The cluster-trust check: every mismatch with its exact sentence, then the start-up fetch of
kube-system/extension-apiserver-authentication against the emulator over real mutual TLS."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import devpki
from kube_front_proxy.cluster_trust import FRONT_PROXY_OFF, TrustDataError, mismatches
from kube_front_proxy.cluster_trust_check import CHECK_USER
from kube_front_proxy.identity import HeaderNames
from kube_front_proxy.runtime import Runtime, build_runtime

from .conftest_emulator import kubeadm_config
from .emulator import EmulatorServer
from .support import free_port, htpasswd_add, proxy_config, write_yaml

FRONT_PROXY_CA = devpki.make_ca("front-proxy-ca")
CLIENT = devpki.issue(FRONT_PROXY_CA, "front-proxy-client")
CHAIN = [CLIENT.cert]
DEFAULT = HeaderNames()
UNSTRIPPED = "which the proxy does not strip, so a client could set it"


def kubeadm_data(**changes: Any) -> dict[str, str]:
    """What a kubeadm 1.32 API server with the UID gate on publishes; changes: key -> list
    (JSON-encoded here) or str (as is), None deletes."""
    data = {
        "client-ca-file": devpki.make_ca("kubernetes").cert_pem().decode(),
        "requestheader-allowed-names": '["front-proxy-client"]',
        "requestheader-client-ca-file": FRONT_PROXY_CA.cert_pem().decode(),
        "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
        "requestheader-group-headers": '["X-Remote-Group"]',
        "requestheader-uid-headers": '["X-Remote-Uid"]',
        "requestheader-username-headers": '["X-Remote-User"]',
    }
    for key, value in changes.items():
        key = "requestheader-" + key.replace("_", "-")
        if value is None:
            data.pop(key)
        else:
            data[key] = value if isinstance(value, str) else json.dumps(value)
    return data


def test_kubeadm_settings_match() -> None:
    assert mismatches(kubeadm_data(), DEFAULT, CHAIN) == []


def test_a_username_header_the_server_does_not_read_nor_the_proxy_strip() -> None:
    names = HeaderNames(username=("X-Auth-User",))
    assert mismatches(kubeadm_data(), names, CHAIN) == [
        "identity.username_headers is [X-Auth-User] but the API server reads "
        "--requestheader-username-headers [X-Remote-User]: the proxy writes X-Auth-User, which "
        f"the API server does not read; the API server reads X-Remote-User, {UNSTRIPPED}"
    ]


def test_the_server_reads_another_username_header_the_proxy_lets_through() -> None:
    data = kubeadm_data(username_headers=["x-remote-user", "X-Other"])  # case does not matter
    assert mismatches(data, DEFAULT, CHAIN) == [
        "identity.username_headers is [X-Remote-User] but the API server reads "
        f"--requestheader-username-headers [x-remote-user, X-Other]: the API server reads "
        f"X-Other, {UNSTRIPPED}"
    ]


def test_only_the_first_name_is_written_so_only_it_must_be_read() -> None:
    names = HeaderNames(username=("X-Mine", "X-Remote-User"))
    assert mismatches(kubeadm_data(), names, CHAIN) == [
        "identity.username_headers is [X-Mine, X-Remote-User] but the API server reads "
        "--requestheader-username-headers [X-Remote-User]: the proxy writes X-Mine, which the "
        "API server does not read"
    ]
    # Names the proxy strips and the server does not read are harmless.
    names = HeaderNames(username=("X-Remote-User", "X-Mine"))
    assert mismatches(kubeadm_data(), names, CHAIN) == []


def test_groups() -> None:
    data = kubeadm_data(group_headers=["X-Remote-Group", "X-Group-2"])
    assert mismatches(data, DEFAULT, CHAIN) == [
        "identity.group_headers is [X-Remote-Group] but the API server reads "
        "--requestheader-group-headers [X-Remote-Group, X-Group-2]: the API server reads "
        f"X-Group-2, {UNSTRIPPED}"
    ]
    # Stripped is stripped, whichever list names it.
    names = HeaderNames(username=("X-Remote-User", "X-Group-2"))
    assert mismatches(data, names, CHAIN) == []
    # A proxy that sends no groups is fine if the server reads none.
    no_groups = HeaderNames(group=())
    assert mismatches(kubeadm_data(group_headers=[]), no_groups, CHAIN) == []
    assert mismatches(kubeadm_data(), no_groups, CHAIN) == [
        "identity.group_headers is [] but the API server reads --requestheader-group-headers "
        f"[X-Remote-Group]: the API server reads X-Remote-Group, {UNSTRIPPED}"
    ]


def test_extra_prefixes() -> None:
    data = kubeadm_data(extra_headers_prefix=["X-Remote-"])
    assert mismatches(data, DEFAULT, CHAIN) == [
        "identity.extra_headers_prefixes is [X-Remote-Extra-] but the API server reads "
        "--requestheader-extra-headers-prefix [X-Remote-]: the proxy writes X-Remote-Extra-, "
        f"which the API server does not read; the API server reads X-Remote-, {UNSTRIPPED}"
    ]
    # A longer server prefix is inside what the proxy strips.
    data = kubeadm_data(extra_headers_prefix=["x-remote-extra-", "X-Remote-Extra-Acme-"])
    assert mismatches(data, DEFAULT, CHAIN) == []


def test_uid_headers_a_server_without_the_uid_gate_does_not_read() -> None:
    expected = [
        "identity.uid_headers is [X-Remote-Uid] but the API server reads "
        "--requestheader-uid-headers []: the proxy writes X-Remote-Uid, which the API server "
        "does not read"
    ]
    assert mismatches(kubeadm_data(uid_headers=[]), DEFAULT, CHAIN) == expected
    # Before 1.32 the key is not published at all: no uid is read either.
    assert mismatches(kubeadm_data(uid_headers=None), DEFAULT, CHAIN) == expected
    assert mismatches(kubeadm_data(uid_headers=[]), HeaderNames(uid=()), CHAIN) == []


def test_front_proxy_authentication_off() -> None:
    assert mismatches(kubeadm_data(client_ca_file=None), DEFAULT, CHAIN) == [FRONT_PROXY_OFF]
    assert mismatches({"client-ca-file": "x"}, DEFAULT, CHAIN) == [FRONT_PROXY_OFF]
    assert FRONT_PROXY_OFF == (
        "the API server has no --requestheader-client-ca-file: front-proxy authentication is "
        "off, so it ignores the identity headers the proxy sends"
    )


def test_a_certificate_from_another_ca() -> None:
    other = devpki.issue(devpki.make_ca("other-ca"), "front-proxy-client")
    assert mismatches(kubeadm_data(), DEFAULT, [other.cert]) == [
        "upstream.client_cert (CN front-proxy-client) does not chain to a CA in the API "
        "server's --requestheader-client-ca-file ([front-proxy-ca]): unable to get local "
        "issuer certificate"
    ]


def test_intermediates_come_from_the_chain_the_proxy_presents() -> None:
    intermediate = devpki.issue(FRONT_PROXY_CA, "front-proxy-intermediate", is_ca=True, usages=())
    leaf = devpki.issue(intermediate, "front-proxy-client")
    assert mismatches(kubeadm_data(), DEFAULT, [leaf.cert, intermediate.cert]) == []
    assert mismatches(kubeadm_data(), DEFAULT, [leaf.cert]) == [
        "upstream.client_cert (CN front-proxy-client) does not chain to a CA in the API "
        "server's --requestheader-client-ca-file ([front-proxy-ca]): unable to get local "
        "issuer certificate"
    ]


def test_key_usage_and_expiry() -> None:
    server_only = devpki.issue(FRONT_PROXY_CA, "front-proxy-client", usages=("server",))
    assert mismatches(kubeadm_data(), DEFAULT, [server_only.cert]) == [
        "upstream.client_cert (CN front-proxy-client) does not chain to a CA in the API "
        "server's --requestheader-client-ca-file ([front-proxy-ca]): front-proxy-client is not "
        "for client authentication"
    ]
    no_eku = devpki.issue(FRONT_PROXY_CA, "front-proxy-client", usages=())
    assert mismatches(kubeadm_data(), DEFAULT, [no_eku.cert]) == []
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    expired = devpki.issue(
        FRONT_PROXY_CA, "front-proxy-client", not_before=past, not_after=past.replace(year=2021)
    )
    assert mismatches(kubeadm_data(), DEFAULT, [expired.cert]) == [
        "upstream.client_cert (CN front-proxy-client) does not chain to a CA in the API "
        "server's --requestheader-client-ca-file ([front-proxy-ca]): certificate has expired"
    ]


def test_allowed_names() -> None:
    # The CN is compared exactly, case included (x509.go verifySubject).
    data = kubeadm_data(allowed_names=["aggregator", "Front-Proxy-Client"])
    assert mismatches(data, DEFAULT, CHAIN) == [
        "upstream.client_cert has CN front-proxy-client but the API server's "
        "--requestheader-allowed-names is [aggregator, Front-Proxy-Client]"
    ]
    assert mismatches(kubeadm_data(allowed_names=[]), DEFAULT, CHAIN) == []


def test_every_mismatch_at_once() -> None:
    data = kubeadm_data(group_headers=["G"], allowed_names=["x"])
    found = mismatches(data, HeaderNames(username=("U",)), CHAIN)
    assert [m.split(" ", 1)[0] for m in found] == [
        "identity.username_headers",
        "identity.group_headers",
        "upstream.client_cert",
    ]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"username_headers": "X-Remote-User"}, "requestheader-username-headers is not JSON"),
        ({"group_headers": '{"a": 1}'}, "requestheader-group-headers is not a JSON list"),
        ({"allowed_names": "[1]"}, "requestheader-allowed-names is not a JSON list"),
        ({"client_ca_file": "not pem"}, "requestheader-client-ca-file is not a PEM"),
    ],
)
def test_data_kube_apiserver_would_not_write(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(TrustDataError, match=message):
        mismatches(kubeadm_data(**changes), DEFAULT, CHAIN)


def test_null_lists_are_empty() -> None:
    assert mismatches(kubeadm_data(allowed_names="null"), DEFAULT, CHAIN) == []


# --- the fetch, against the emulator over the proxy's own mutual TLS ----------------------


def load(tmp_path: Path, pki: Path, port: int, **overrides: Any) -> Runtime:
    htpasswd_add(tmp_path / "htpasswd", "alice", "pw", "apr1")
    config = proxy_config(pki, port, 8443, **overrides)
    config["authn"] = {"htpasswd": "htpasswd"}
    return build_runtime(write_yaml(tmp_path / "config.yaml", config))


@pytest.fixture
def emulator(pki: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[int]:
    flags = getattr(request, "param", {})
    log = tmp_path / "requests.jsonl"
    config = kubeadm_config(pki, anonymous_auth=False, request_log=log, **flags)
    with EmulatorServer(config) as server:
        yield int(server.url.rsplit(":", 1)[1])


def run_check(
    tmp_path: Path, pki: Path, ports: list[int], caplog: pytest.LogCaptureFixture
) -> list[tuple[int, str]]:
    runtime = load(tmp_path, pki, ports[0])
    assert runtime.trust_check
    caplog.set_level(logging.INFO, "kube_front_proxy")
    asyncio.run(runtime.trust_check([("127.0.0.1", p) for p in ports]))
    return [(r.levelno, r.getMessage()) for r in caplog.records]


def test_the_check_reads_the_configmap_as_its_own_user(
    tmp_path: Path, pki: Path, emulator: int, caplog: pytest.LogCaptureFixture
) -> None:
    # The first server is down: the next one answers.
    logs = run_check(tmp_path, pki, [free_port(), emulator], caplog)
    assert logs == [
        (logging.INFO, f"kube-front-proxy: cluster trust checked on 127.0.0.1:{emulator}: the "
         "identity headers and the front-proxy certificate match "
         "kube-system/extension-apiserver-authentication"),
    ]  # fmt: skip
    records = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().split("\n")
               if line]  # fmt: skip
    assert [(r["method"], r["path"]) for r in records] == [
        ("GET", "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication")
    ]
    assert ["X-Remote-User", CHECK_USER] in records[0]["headers"]


@pytest.mark.parametrize(
    "emulator", [{"requestheader_group_headers": ("X-Remote-Group", "X-Group-2")}], indirect=True
)
def test_each_mismatch_is_a_warning(
    tmp_path: Path, pki: Path, emulator: int, caplog: pytest.LogCaptureFixture
) -> None:
    assert run_check(tmp_path, pki, [emulator], caplog) == [
        (logging.WARNING, "kube-front-proxy: cluster trust: identity.group_headers is "
         "[X-Remote-Group] but the API server reads --requestheader-group-headers "
         f"[X-Remote-Group, X-Group-2]: the API server reads X-Group-2, {UNSTRIPPED}"),
    ]  # fmt: skip


@pytest.mark.parametrize("emulator", [{"authorization_mode": ("AlwaysDeny",)}], indirect=True)
def test_forbidden_says_what_to_grant(
    tmp_path: Path, pki: Path, emulator: int, caplog: pytest.LogCaptureFixture
) -> None:
    assert run_check(tmp_path, pki, [emulator], caplog) == [
        (logging.WARNING, "kube-front-proxy: the cluster trust check could not run: "
         f"127.0.0.1:{emulator} answered 403 Forbidden: bind the Role "
         "kube-system/extension-apiserver-authentication-reader to user "
         "system:kube-front-proxy:cluster-trust, or set upstream.check_cluster_trust: false"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    "emulator", [{"requestheader_allowed_names": ("other-proxy",)}], indirect=True
)
def test_unauthorized_names_the_likely_causes(
    tmp_path: Path, pki: Path, emulator: int, caplog: pytest.LogCaptureFixture
) -> None:
    assert run_check(tmp_path, pki, [emulator], caplog) == [
        (logging.WARNING, "kube-front-proxy: the cluster trust check could not run: the API "
         "server did not take the proxy for a front proxy (401): upstream.client_cert is not "
         "signed by its --requestheader-client-ca-file, its CN is not in "
         "--requestheader-allowed-names, or --requestheader-username-headers does not list "
         "identity.username_headers[0] X-Remote-User; requests through the proxy will get 401 "
         "too"),
    ]  # fmt: skip


def test_no_server_answers(tmp_path: Path, pki: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    [(level, message)] = run_check(tmp_path, pki, [port], caplog)
    assert level == logging.WARNING
    assert message.startswith(
        f"kube-front-proxy: the cluster trust check could not run: 127.0.0.1:{port}: "
        "ConnectionRefusedError: "
    )


def test_the_check_is_on_by_default_and_off_in_impersonation_mode(
    tmp_path: Path, pki: Path
) -> None:
    assert load(tmp_path, pki, 6443).settings.upstream.check_cluster_trust is True
    off = load(tmp_path, pki, 6443, upstream={"check_cluster_trust": False})
    assert off.trust_check is None
    (tmp_path / "token").write_text("a-token")
    impersonating = load(
        tmp_path, pki, 6443, identity={"mode": "impersonate"},
        upstream={"client_cert": None, "client_key": None, "token_file": str(tmp_path / "token")},
    )  # fmt: skip
    assert impersonating.upstream_token and impersonating.trust_check is None
