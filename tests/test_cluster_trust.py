"""The cluster-trust check: every mismatch with its exact sentence, then the start-up fetch of
kube-system/extension-apiserver-authentication against the emulator over real mutual TLS."""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

import devpki
from kube_front_proxy.config.runtime import Runtime, build_runtime
from kube_front_proxy.identity.headers import HeaderNames
from kube_front_proxy.upstream.trust import FRONT_PROXY_OFF, TrustDataError, mismatches
from kube_front_proxy.upstream.trust_check import CHECK_USER, Verdict
from tests.support.configs import htpasswd_add, proxy_config, write_yaml
from tests.support.emulator_pki import kubeadm_config
from tests.support.processes import free_port

from .emulator import EmulatorServer

FRONT_PROXY_CA = devpki.make_ca("front-proxy-ca")
CLIENT = devpki.issue(FRONT_PROXY_CA, "front-proxy-client")
CHAIN = [CLIENT.cert]
DEFAULT = HeaderNames()


def unlisted(key: str) -> str:
    return f"which identity.{key} does not list: stripped from client requests anyway"


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


def found(data: dict[str, str], names: HeaderNames = DEFAULT,
          chain: list[x509.Certificate] = CHAIN) -> tuple[list[str], list[str]]:  # fmt: skip
    """The problems (the proxy does not serve) and the notes (stripped anyway)."""
    findings = mismatches(data, names, chain)
    return findings.problems, findings.notes


def test_kubeadm_settings_match() -> None:
    assert found(kubeadm_data()) == ([], [])
    assert mismatches(kubeadm_data(), DEFAULT, CHAIN).server_names == DEFAULT


def test_a_username_header_the_server_does_not_read() -> None:
    names = HeaderNames(username=("X-Auth-User",))
    differ = ("identity.username_headers is [X-Auth-User] but the API server reads "
              "--requestheader-username-headers [X-Remote-User]")  # fmt: skip
    assert found(kubeadm_data(), names) == (
        [f"{differ}: the proxy writes X-Auth-User, which the API server does not read, so "
         "every request would be refused (401)"],
        [f"{differ}: the API server also reads X-Remote-User, {unlisted('username_headers')}"],
    )  # fmt: skip


def test_the_server_reads_another_username_header_which_is_stripped_anyway() -> None:
    data = kubeadm_data(username_headers=["x-remote-user", "X-Other"])  # case does not matter
    assert found(data) == ([], [
        "identity.username_headers is [X-Remote-User] but the API server reads "
        "--requestheader-username-headers [x-remote-user, X-Other]: the API server also reads "
        f"X-Other, {unlisted('username_headers')}"
    ])  # fmt: skip
    assert mismatches(data, DEFAULT, CHAIN).server_names.username == ("x-remote-user", "X-Other")


def test_only_the_first_name_is_written_so_only_it_must_be_read() -> None:
    names = HeaderNames(username=("X-Mine", "X-Remote-User"))
    assert found(kubeadm_data(), names) == ([
        "identity.username_headers is [X-Mine, X-Remote-User] but the API server reads "
        "--requestheader-username-headers [X-Remote-User]: the proxy writes X-Mine, which the "
        "API server does not read, so every request would be refused (401)"
    ], [])  # fmt: skip
    # Names the proxy strips and the server does not read are harmless.
    names = HeaderNames(username=("X-Remote-User", "X-Mine"))
    assert found(kubeadm_data(), names) == ([], [])


def test_groups() -> None:
    data = kubeadm_data(group_headers=["X-Remote-Group", "X-Group-2"])
    assert found(data) == ([], [
        "identity.group_headers is [X-Remote-Group] but the API server reads "
        "--requestheader-group-headers [X-Remote-Group, X-Group-2]: the API server also reads "
        f"X-Group-2, {unlisted('group_headers')}"
    ])  # fmt: skip
    # Listed is listed, whichever list names it.
    names = HeaderNames(username=("X-Remote-User", "X-Group-2"))
    assert found(data, names) == ([], [])
    # A proxy that sends no groups is fine if the server reads none; else a note.
    no_groups = HeaderNames(group=())
    assert found(kubeadm_data(group_headers=[]), no_groups) == ([], [])
    assert found(kubeadm_data(), no_groups) == ([], [
        "identity.group_headers is [] but the API server reads --requestheader-group-headers "
        f"[X-Remote-Group]: the API server also reads X-Remote-Group, {unlisted('group_headers')}"
    ])  # fmt: skip
    # Groups the server does not read: users would lose them.
    assert found(kubeadm_data(), HeaderNames(group=("X-Auth-Group",)))[0] == [
        "identity.group_headers is [X-Auth-Group] but the API server reads "
        "--requestheader-group-headers [X-Remote-Group]: the proxy writes X-Auth-Group, which "
        "the API server does not read, so users would lose their groups"
    ]


def test_extra_prefixes() -> None:
    data = kubeadm_data(extra_headers_prefix=["X-Remote-"])
    differ = ("identity.extra_headers_prefixes is [X-Remote-Extra-] but the API server reads "
              "--requestheader-extra-headers-prefix [X-Remote-]")  # fmt: skip
    assert found(data) == (
        [f"{differ}: the proxy writes X-Remote-Extra-, which the API server does not read, so "
         "users' extras would be lost or read under other keys"],
        [f"{differ}: the API server also reads X-Remote-, {unlisted('extra_headers_prefixes')}"],
    )  # fmt: skip
    # A longer server prefix is inside what the proxy strips.
    data = kubeadm_data(extra_headers_prefix=["x-remote-extra-", "X-Remote-Extra-Acme-"])
    assert found(data) == ([], [])


def test_uid_headers_a_server_without_the_uid_gate_does_not_read() -> None:
    expected = [
        "identity.uid_headers is [X-Remote-Uid] but the API server reads "
        "--requestheader-uid-headers []: the proxy writes X-Remote-Uid, which the API server "
        "does not read, so users would lose their uid"
    ]
    assert found(kubeadm_data(uid_headers=[])) == (expected, [])
    # Before 1.32 the key is not published at all: no uid is read either.
    assert found(kubeadm_data(uid_headers=None)) == (expected, [])
    assert found(kubeadm_data(uid_headers=[]), HeaderNames(uid=())) == ([], [])
    # No uid in the config while the server reads one: stripped, so nobody sets it.
    assert found(kubeadm_data(), HeaderNames(uid=()))[0] == []


def test_front_proxy_authentication_off() -> None:
    assert found(kubeadm_data(client_ca_file=None)) == ([FRONT_PROXY_OFF], [])
    assert found({"client-ca-file": "x"}) == ([FRONT_PROXY_OFF], [])
    assert FRONT_PROXY_OFF == (
        "the API server has no --requestheader-client-ca-file: front-proxy authentication is "
        "off, so it ignores the identity headers the proxy sends"
    )


def test_a_certificate_from_another_ca() -> None:
    other = devpki.issue(devpki.make_ca("other-ca"), "front-proxy-client")
    assert found(kubeadm_data(), chain=[other.cert]) == ([
        "upstream.client_cert (CN front-proxy-client) does not chain to a CA in the API "
        "server's --requestheader-client-ca-file ([front-proxy-ca]): unable to get local "
        "issuer certificate"
    ], [])  # fmt: skip


def test_intermediates_come_from_the_chain_the_proxy_presents() -> None:
    intermediate = devpki.issue(FRONT_PROXY_CA, "front-proxy-intermediate", is_ca=True, usages=())
    leaf = devpki.issue(intermediate, "front-proxy-client")
    assert found(kubeadm_data(), chain=[leaf.cert, intermediate.cert]) == ([], [])
    assert found(kubeadm_data(), chain=[leaf.cert])[0] == [
        "upstream.client_cert (CN front-proxy-client) does not chain to a CA in the API "
        "server's --requestheader-client-ca-file ([front-proxy-ca]): unable to get local "
        "issuer certificate"
    ]


def test_key_usage_and_expiry() -> None:
    server_only = devpki.issue(FRONT_PROXY_CA, "front-proxy-client", usages=("server",))
    assert found(kubeadm_data(), chain=[server_only.cert])[0] == [
        "upstream.client_cert (CN front-proxy-client) does not chain to a CA in the API "
        "server's --requestheader-client-ca-file ([front-proxy-ca]): front-proxy-client is not "
        "for client authentication"
    ]
    no_eku = devpki.issue(FRONT_PROXY_CA, "front-proxy-client", usages=())
    assert found(kubeadm_data(), chain=[no_eku.cert]) == ([], [])
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    expired = devpki.issue(
        FRONT_PROXY_CA, "front-proxy-client", not_before=past, not_after=past.replace(year=2021)
    )
    assert found(kubeadm_data(), chain=[expired.cert])[0] == [
        "upstream.client_cert (CN front-proxy-client) does not chain to a CA in the API "
        "server's --requestheader-client-ca-file ([front-proxy-ca]): certificate has expired"
    ]


def test_allowed_names() -> None:
    # The CN is compared exactly, case included (x509.go verifySubject).
    data = kubeadm_data(allowed_names=["aggregator", "Front-Proxy-Client"])
    assert found(data)[0] == [
        "upstream.client_cert has CN front-proxy-client but the API server's "
        "--requestheader-allowed-names is [aggregator, Front-Proxy-Client]"
    ]
    assert found(kubeadm_data(allowed_names=[])) == ([], [])


def test_every_mismatch_at_once() -> None:
    data = kubeadm_data(group_headers=["G"], allowed_names=["x"])
    problems, _ = found(data, HeaderNames(username=("U",)))
    assert [m.split(" ", 1)[0] for m in problems] == [
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
    assert found(kubeadm_data(allowed_names="null")) == ([], [])


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


def run_check(tmp_path: Path, pki: Path, ports: list[int]) -> Verdict:
    runtime = load(tmp_path, pki, ports[0])
    assert runtime.trust_check
    return asyncio.run(runtime.trust_check([("127.0.0.1", p) for p in ports]))


def test_the_check_reads_the_configmap_as_its_own_user(
    tmp_path: Path, pki: Path, emulator: int
) -> None:
    # The first server is down: the next one answers.
    verdict = run_check(tmp_path, pki, [free_port(), emulator])
    assert verdict == Verdict(
        server_names=DEFAULT, checked_on=f"127.0.0.1:{emulator}"
    )  # fmt: skip
    records = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().split("\n")
               if line]  # fmt: skip
    assert [(r["method"], r["path"]) for r in records] == [
        ("GET", "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication")
    ]
    assert ["X-Remote-User", CHECK_USER] in records[0]["headers"]


@pytest.mark.parametrize(
    "emulator", [{"requestheader_group_headers": ("X-Remote-Group", "X-Group-2")}], indirect=True
)
def test_a_name_the_config_does_not_list_is_a_note(
    tmp_path: Path, pki: Path, emulator: int
) -> None:
    verdict = run_check(tmp_path, pki, [emulator])
    assert verdict.problems == ()
    assert verdict.notes == (
        "cluster trust: identity.group_headers is [X-Remote-Group] but the API server reads "
        "--requestheader-group-headers [X-Remote-Group, X-Group-2]: the API server also reads "
        f"X-Group-2, {unlisted('group_headers')}",
    )
    assert verdict.server_names and verdict.server_names.group == ("X-Remote-Group", "X-Group-2")


@pytest.mark.parametrize("emulator", [{"authorization_mode": ("AlwaysDeny",)}], indirect=True)
def test_forbidden_says_what_to_grant(tmp_path: Path, pki: Path, emulator: int) -> None:
    assert run_check(tmp_path, pki, [emulator]) == Verdict(problems=(
        "the cluster trust check could not run: "
        f"127.0.0.1:{emulator} answered 403 Forbidden: bind the Role "
        "kube-system/extension-apiserver-authentication-reader to user "
        "system:kube-front-proxy:cluster-trust, or set upstream.check_cluster_trust: false",
    ))  # fmt: skip


@pytest.mark.parametrize(
    "emulator", [{"requestheader_allowed_names": ("other-proxy",)}], indirect=True
)
def test_unauthorized_names_the_likely_causes(tmp_path: Path, pki: Path, emulator: int) -> None:
    assert run_check(tmp_path, pki, [emulator]) == Verdict(problems=(
        "the cluster trust check could not run: the API server did not take the proxy for a "
        "front proxy (401): upstream.client_cert is not signed by its "
        "--requestheader-client-ca-file, its CN is not in --requestheader-allowed-names, or "
        "--requestheader-username-headers does not list identity.username_headers[0] "
        "X-Remote-User",
    ))  # fmt: skip


def test_no_server_answers(tmp_path: Path, pki: Path) -> None:
    port = free_port()
    [problem] = run_check(tmp_path, pki, [port]).problems
    assert problem.startswith(
        f"the cluster trust check could not run: 127.0.0.1:{port}: ConnectionRefusedError: "
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
