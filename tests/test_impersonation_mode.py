"""identity.mode impersonate (the proxy's service-account token plus Impersonate-* headers), and
the refusal of client-sent Impersonate-* headers in front-proxy mode, end to end with kubectl
against the emulator running kube-apiserver's ABAC authorizer and impersonation filter."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import http

from kube_front_proxy.config.errors import ConfigError
from kube_front_proxy.config.settings import load_settings
from kube_front_proxy.identity.service_account import PLACEHOLDER, TokenInjector
from tests.support.api_paths import SSR
from tests.support.configs import proxy_config, write_yaml
from tests.support.harness import Emulator, start_emulator, start_proxy_for
from tests.support.impersonation import SA, SA_TOKEN, impersonating_proxy
from tests.support.users import ALICE, ALICE_PASSWORD, basic_header

V1BETA1 = {"apiVersion": "abac.authorization.kubernetes.io/v1beta1", "kind": "Policy"}
POLICY = [
    # The proxy's service account may impersonate anyone (users, groups, uids, userextras/*).
    {"user": SA, "namespace": "*", "resource": "*", "apiGroup": "*"},
    # In front-proxy mode this user may impersonate users, not groups. (alice is in
    # system:masters, which kube-apiserver always allows everything.)
    {"user": "apr1-user", "resource": "users", "apiGroup": ""},
    {"group": "developers", "namespace": "*", "resource": "pods", "apiGroup": "", "readonly": True},
    {"user": "*", "resource": "selfsubjectreviews", "apiGroup": "authentication.k8s.io"},
    {"user": "*", "nonResourcePath": "*", "readonly": True},
    # The front-proxy mode's cluster trust check (kubeadm's extension-apiserver-authentication-
    # reader, as the README says to bind it): without it that proxy would not serve.
    {
        "user": "system:kube-front-proxy:cluster-trust",
        "namespace": "kube-system",
        "resource": "configmaps",
        "apiGroup": "",
        "readonly": True,
    },
]


@pytest.fixture(scope="module")
def abac_emulator(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    workdir = tmp_path_factory.mktemp("abac-emulator")
    (workdir / "tokens.csv").write_text(f"{SA_TOKEN},{SA},sa-uid\n")
    lines = [json.dumps({**V1BETA1, "spec": spec}) for spec in POLICY]
    (workdir / "policy.jsonl").write_text("\n".join(lines) + "\n")
    with start_emulator(
        pki, workdir, "--token-auth-file", str(workdir / "tokens.csv"),
        "--authorization-mode", "ABAC", "--authorization-policy-file",
        str(workdir / "policy.jsonl"),
    ) as emulator:  # fmt: skip
        yield emulator


def requests_to(emulator: Emulator, before: int, path: str) -> list[dict[str, Any]]:
    return [r for r in emulator.requests()[before:] if r["path"].split("?")[0] == path]


def test_impersonation_mode_end_to_end(pki: Path, abac_emulator: Emulator, tmp_path: Path) -> None:
    before = len(abac_emulator.requests())
    flows = tmp_path / "flows.mitm"
    proxy = impersonating_proxy(pki, tmp_path, abac_emulator.port, "-w", str(flows))
    try:
        info = proxy.whoami()
        pods = proxy.kubectl("get", "pods", "-n", "default", "-o", "name")
    finally:
        proxy.process.stop()
    assert info == {
        "username": "alice",
        "uid": ALICE["uid"],
        "groups": [*ALICE["groups"], "system:authenticated"],
        "extra": ALICE["extra"],
    }
    assert pods.returncode == 0, pods.stderr
    record = requests_to(abac_emulator, before, SSR)[-1]
    # Who authenticated: the proxy's token, on a connection without a client certificate.
    assert record["authentication"]["user"]["username"] == SA
    assert record["peer_cert_cn"] is None
    assert record["impersonated_user"]["username"] == "alice"
    sent = [[n, v] for n, v in record["headers"]
            if n.lower().startswith(("impersonate-", "authorization", "x-remote-"))]  # fmt: skip
    assert sent == [
        ["Impersonate-User", "alice"],
        ["Impersonate-Uid", "1001"],
        ["Impersonate-Group", "developers"],
        ["Impersonate-Group", "system:masters"],
        ["Impersonate-Group", "a,b"],
        ["Impersonate-Extra-scopes", "view"],
        ["Impersonate-Extra-scopes", "edit"],
        ["Impersonate-Extra-acme.com%2Fproject", "payments"],
        ["Authorization", f"Bearer {SA_TOKEN}"],
    ]
    # The token is on the wire only: never in a saved flow or the log.
    saved = flows.read_bytes()
    assert SA_TOKEN.encode() not in saved and PLACEHOLDER in saved
    assert SA_TOKEN not in proxy.process.output()


def test_client_impersonation_is_refused_by_default(
    pki: Path, abac_emulator: Emulator, tmp_path: Path
) -> None:
    before = len(abac_emulator.requests())
    for workdir, mode in ((tmp_path / "fp", "front-proxy"), (tmp_path / "imp", "impersonate")):
        workdir.mkdir()
        proxy = (
            start_proxy_for(pki, workdir, abac_emulator.port)
            if mode == "front-proxy"
            else impersonating_proxy(pki, workdir, abac_emulator.port)
        )
        try:
            result = proxy.kubectl("--as", "bob", "get", "--raw", "/api/v1/pods")
            status, _, body = proxy.raw(
                "GET", "/api/v1/namespaces/default/pods",
                [basic_header("alice", ALICE_PASSWORD), ("impersonate-GROUP", "system:masters")],
            )  # fmt: skip
        finally:
            proxy.process.stop()
        assert result.returncode == 1, mode
        assert "Error from server (Forbidden): impersonation (Impersonate-* headers) is not " \
               "allowed through this proxy" in result.stderr, mode  # fmt: skip
        assert status == 403, mode
        assert json.loads(body) == {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "impersonation (Impersonate-* headers) is not allowed through this proxy",
            "reason": "Forbidden", "code": 403,
        }  # fmt: skip
    assert requests_to(abac_emulator, before, SSR) == []


def test_allowed_client_impersonation_is_checked_by_the_api_server(
    pki: Path, abac_emulator: Emulator, tmp_path: Path
) -> None:
    proxy = start_proxy_for(
        pki, tmp_path, abac_emulator.port, identity={"allow_client_impersonation": True}
    )
    try:
        as_bob = proxy.kubectl("--as", "bob", "auth", "whoami", "-o", "json", user="apr1-user")
        as_group = proxy.kubectl(
            "--as", "bob", "--as-group", "admins", "get", "--raw", "/version", user="apr1-user"
        )
    finally:
        proxy.process.stop()
    assert as_bob.returncode == 0, as_bob.stderr
    user = json.loads(as_bob.stdout)["status"]["userInfo"]
    assert user == {"username": "bob", "groups": ["system:authenticated"]}
    assert as_group.returncode == 1
    assert ('groups "admins" is forbidden: User "apr1-user" cannot impersonate resource '
            '"groups" in API group "" at the cluster scope') in as_group.stderr  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "key", "message"),
    [
        ({"identity": {"mode": "impersonate"}}, "upstream.token_file", "missing"),
        (
            {"identity": {"mode": "impersonate"}, "upstream": {"token_file": "t"}},
            "upstream.client_cert",
            "not used with identity.mode impersonate",
        ),
        ({"upstream": {"token_file": "t"}}, "upstream.token_file", "only used with"),
        ({"upstream": {"client_key": None}}, "upstream.client_key", "missing"),
        (
            {"identity": {"mode": "impersonate", "allow_client_impersonation": True}},
            "identity.allow_client_impersonation",
            "cannot be true in mode impersonate",
        ),
        ({"identity": {"mode": "sideways"}}, "identity.mode", "must be front-proxy or"),
    ],
)
def test_identity_mode_config_errors(
    pki: Path, tmp_path: Path, overrides: dict[str, Any], key: str, message: str
) -> None:
    config = write_yaml(tmp_path / "config.yaml", proxy_config(pki, 6443, 8443, **overrides))
    with pytest.raises(ConfigError) as e:
        load_settings(config)
    assert (e.value.key, message in str(e.value)) == (key, True)


def test_the_token_goes_only_to_configured_servers_over_https() -> None:
    injector = TokenInjector()
    injector.use(b"secret", [("10.0.0.1", 6443)])
    head = b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: " + PLACEHOLDER + b"\r\n\r\n"
    request = http.Request.make("GET", "https://10.0.0.1:6443/")
    assert injector.inject(request, head) == (
        b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer secret\r\n\r\n"
    )
    for url in ("http://10.0.0.1:6443/", "https://10.0.0.2:6443/", "https://10.0.0.1:443/"):
        assert injector.inject(http.Request.make("GET", url), head) == head, url
    # Only the Authorization line: the same text in another header is left alone.
    other = head.replace(b"Authorization", b"X-Note")
    assert injector.inject(request, other) == other
