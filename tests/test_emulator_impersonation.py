"""The emulator's ABAC authorizer and impersonation filter, over real TLS and with real kubectl.

The server runs `--authorization-mode=ABAC` with the policy below and static tokens for its
callers: the proxy's service account (may impersonate anyone), alice (may impersonate users
only, and read pods in `default`) and eve (may only read non-resource paths). Expected 403
bodies are written out byte for byte: `responsewriters.Forbidden` + ABAC's reason.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.emulator import EmulatorServer, build_authorization
from tests.emulator.__main__ import config_from_args, parse_args
from tests.emulator.abac import PolicyList, PolicySpec, parse_policy
from tests.emulator.authz import AlwaysAllow, Attributes, Decision
from tests.emulator.impersonation import impersonate, impersonated_user
from tests.emulator.requestheader import UserInfo
from tests.support.api_paths import PODS, SSR
from tests.support.configs import write_kubeconfig
from tests.support.emulator_pki import EmulatorPKI, kubeadm_config, request
from tests.support.http1 import H1Response
from tests.support.processes import KUBECTL, kubectl

PROXY_SA = "system:serviceaccount:kube-system:kube-front-proxy"
TOKENS = f"""proxy-token,{PROXY_SA},sa-uid
alice-token,alice,1,"devs"
eve-token,eve,2
"""
V1BETA1 = {"apiVersion": "abac.authorization.kubernetes.io/v1beta1", "kind": "Policy"}
POLICY: list[dict[str, object]] = [
    {"user": PROXY_SA, "namespace": "*", "resource": "*", "apiGroup": "*"},
    {"user": "alice", "namespace": "default", "resource": "pods", "apiGroup": "", "readonly": True},
    {"user": "alice", "resource": "users", "apiGroup": ""},
    {"user": "bob", "namespace": "*", "resource": "*", "apiGroup": "*", "readonly": True},
    {"user": "*", "resource": "selfsubjectreviews", "apiGroup": "authentication.k8s.io"},
    {"user": "*", "nonResourcePath": "*", "readonly": True},
]


def write_policy(path: Path, specs: list[dict[str, object]]) -> Path:
    lines = ["# ABAC policy for the emulator tests", ""]
    lines += [json.dumps({**V1BETA1, "spec": spec}) for spec in specs]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def server(
    emulator_pki: EmulatorPKI,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[EmulatorServer]:
    workdir = tmp_path_factory.mktemp("abac")
    (workdir / "tokens.csv").write_text(TOKENS)
    config = kubeadm_config(
        emulator_pki,
        token_auth_file=workdir / "tokens.csv",
        authorization_mode=("ABAC",),
        authorization_policy_file=write_policy(workdir / "policy.jsonl", POLICY),
    )
    with EmulatorServer(config) as s:
        yield s


def call(
    server: EmulatorServer,
    pki: EmulatorPKI,
    token: str,
    method: str,
    path: str,
    headers: list[tuple[str, str]] | None = None,
) -> H1Response:
    body = b"{}" if method == "POST" else None
    auth = [("Authorization", f"Bearer {token}"), ("Content-Type", "application/json")]
    return request(server, pki, method, path, auth + (headers or []), body=body)


def forbidden_body(message: str, details: str) -> bytes:
    return (
        '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":'
        + json.dumps(message)
        + f',"reason":"Forbidden","details":{details},"code":403}}\n'
    ).encode()


def assert_forbidden(response: H1Response, message: str, details: str) -> None:
    assert response.status == 403
    assert response.header("Content-Type") == "application/json"
    assert response.header("X-Content-Type-Options") == "nosniff"
    assert response.body == forbidden_body(message, details)


def user_info(response: H1Response) -> dict[str, object]:
    assert response.status == 201, response.body
    info: dict[str, object] = json.loads(response.body)["status"]["userInfo"]
    return info


# --- ABAC: the matching rules of abac.go --------------------------------------------------------


def attrs(user: UserInfo, verb: str, **kw: str) -> Attributes:
    return Attributes(user=user, verb=verb, resource_request="path" not in kw, **kw)


ALICE = UserInfo("alice", groups=("devs", "system:authenticated"))
ANONYMOUS = UserInfo("system:anonymous", groups=("system:unauthenticated",))


def test_abac_wildcard_user_means_authenticated_not_anonymous() -> None:
    everything = {"namespace": "*", "resource": "*", "apiGroup": "*"}
    spec = parse_policy({**V1BETA1, "spec": {"user": "*", **everything}})
    assert spec == PolicySpec(
        group="system:authenticated", namespace="*", resource="*", api_group="*"
    )
    get = {"namespace": "default", "resource": "pods"}
    assert PolicyList([spec]).authorize(attrs(ALICE, "get", **get)) == (Decision.ALLOW, "")
    assert PolicyList([spec]).authorize(attrs(ANONYMOUS, "get", **get)) == (
        Decision.NO_OPINION,
        "No policy matched.",
    )
    # Without the v1beta1 conversion "*" would match anonymous too.
    raw = PolicySpec(user="*", namespace="*", resource="*", api_group="*")
    assert PolicyList([raw]).authorize(attrs(ANONYMOUS, "get", **get))[0] is Decision.ALLOW


def test_abac_subject_group_readonly_and_scope() -> None:
    devs = PolicyList([PolicySpec(group="devs", resource="pods", api_group="", readonly=True)])
    cluster_pods = {"resource": "pods", "api_group": ""}
    assert devs.authorize(attrs(ALICE, "list", **cluster_pods))[0] is Decision.ALLOW
    assert devs.authorize(attrs(ALICE, "watch", **cluster_pods))[0] is Decision.ALLOW
    assert devs.authorize(attrs(ALICE, "create", **cluster_pods))[0] is Decision.NO_OPINION
    # An empty namespace in the policy is the cluster scope, not "any namespace".
    namespaced = attrs(ALICE, "list", namespace="default", **cluster_pods)
    assert devs.authorize(namespaced)[0] is Decision.NO_OPINION
    # Neither user nor group: the policy matches nobody.
    nobody = PolicyList([PolicySpec(namespace="*", resource="*", api_group="*")])
    assert nobody.authorize(attrs(ALICE, "get", **cluster_pods))[0] is Decision.NO_OPINION


def test_abac_non_resource_paths() -> None:
    policy = PolicyList([PolicySpec(user="alice", non_resource_path="/apis/*", readonly=True)])
    assert policy.authorize(attrs(ALICE, "get", path="/apis/apps/v1"))[0] is Decision.ALLOW
    assert policy.authorize(attrs(ALICE, "get", path="/api"))[0] is Decision.NO_OPINION
    assert policy.authorize(attrs(ALICE, "post", path="/apis/x"))[0] is Decision.NO_OPINION
    # A non-resource policy never matches a resource request, even with "*".
    star = PolicyList([PolicySpec(user="alice", non_resource_path="*")])
    assert star.authorize(attrs(ALICE, "get", resource="pods"))[0] is Decision.NO_OPINION


def test_abac_policy_file_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "policy.jsonl"
    path.write_text('# comment\n\n{"apiVersion":"v1","kind":"Policy","spec":{}}\n')
    with pytest.raises(ValueError) as error:
        PolicyList.from_file(path)
    line = '{"apiVersion":"v1","kind":"Policy","spec":{}}'
    assert str(error.value).startswith(f"error reading policy file {path}, line 3: {line}: ")
    path.write_text(json.dumps({**V1BETA1, "spec": {"user": "a", "readonly": "yes"}}) + "\n")
    with pytest.raises(ValueError, match=r"line 1: .*spec\.readonly must be a boolean"):
        PolicyList.from_file(path)


# --- ABAC through the server: allow, deny, exact Status -----------------------------------------


def test_abac_allows_and_denies_with_the_exact_status(
    server: EmulatorServer,
    emulator_pki: EmulatorPKI,
) -> None:
    assert call(server, emulator_pki, "alice-token", "GET", PODS).status == 200
    denied = call(server, emulator_pki, "alice-token", "GET", "/api/v1/namespaces/kube-system/pods")
    assert_forbidden(
        denied,
        'pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the'
        ' namespace "kube-system": No policy matched.',
        '{"kind":"pods"}',
    )
    named = call(server, emulator_pki, "eve-token", "GET", f"{PODS}/nginx-1")
    assert_forbidden(
        named,
        'pods "nginx-1" is forbidden: User "eve" cannot get resource "pods" in API group "" in'
        ' the namespace "default": No policy matched.',
        '{"name":"nginx-1","kind":"pods"}',
    )
    assert call(server, emulator_pki, "eve-token", "GET", "/version").status == 200
    post = call(server, emulator_pki, "eve-token", "POST", "/api")
    assert_forbidden(
        post, 'forbidden: User "eve" cannot post path "/api": No policy matched.', "{}"
    )


def test_rbac_stand_in_stays_the_default(
    emulator_server: EmulatorServer,
    emulator_pki: EmulatorPKI,
) -> None:
    """Without --authorization-mode: anonymous may not impersonate; no reason is appended."""
    response = request(emulator_server, emulator_pki, "GET", PODS, [("Impersonate-User", "bob")])
    assert_forbidden(
        response,
        'users "bob" is forbidden: User "system:anonymous" cannot impersonate resource "users"'
        ' in API group "" at the cluster scope',
        '{"name":"bob","kind":"users"}',
    )


# --- impersonation: every branch of the filter --------------------------------------------------


def test_impersonate_user(server: EmulatorServer, emulator_pki: EmulatorPKI) -> None:
    response = call(server, emulator_pki, "proxy-token", "POST", SSR, [("Impersonate-User", "bob")])
    assert user_info(response) == {"username": "bob", "groups": ["system:authenticated"]}
    record = server.records()[-1]
    assert record["authentication"]["user"] == {
        "username": PROXY_SA,
        "uid": "sa-uid",
        "groups": ["system:authenticated"],
        "extra": {},
    }
    assert record["impersonated_user"] == {
        "username": "bob",
        "uid": "",
        "groups": ["system:authenticated"],
        "extra": {},
    }
    assert ["Impersonate-User", "bob"] in record["headers"]  # the log keeps what arrived


def test_impersonate_groups_uid_and_extras(
    server: EmulatorServer,
    emulator_pki: EmulatorPKI,
) -> None:
    headers = [
        ("Impersonate-User", "alice"),
        ("Impersonate-Group", "devs"),
        ("impersonate-group", "a,b"),
        ("Impersonate-Uid", "1001"),
        ("Impersonate-Extra-Scopes", "view"),
        ("impersonate-extra-scopes", "edit"),
        ("Impersonate-Extra-Acme.com%2Fproject", "payments"),
    ]
    info = user_info(call(server, emulator_pki, "proxy-token", "POST", SSR, headers))
    assert info == {
        "username": "alice",
        "uid": "1001",
        "groups": ["devs", "a,b", "system:authenticated"],
        "extra": {"acme.com/project": ["payments"], "scopes": ["view", "edit"]},
    }


def test_impersonated_groups_may_say_unauthenticated(
    server: EmulatorServer,
    emulator_pki: EmulatorPKI,
) -> None:
    headers = [("Impersonate-User", "bob"), ("Impersonate-Group", "system:unauthenticated")]
    assert call(server, emulator_pki, "proxy-token", "GET", PODS, headers).status == 200
    assert server.records()[-1]["impersonated_user"] == {
        "username": "bob",
        "uid": "",
        "groups": ["system:unauthenticated"],
        "extra": {},
    }
    # Not in system:authenticated, so the `"user": "*"` policy does not let bob review himself.
    review = call(server, emulator_pki, "proxy-token", "POST", SSR, headers)
    assert_forbidden(
        review,
        'selfsubjectreviews.authentication.k8s.io is forbidden: User "bob" cannot create resource'
        ' "selfsubjectreviews" in API group "authentication.k8s.io" at the cluster scope: No'
        " policy matched.",
        '{"group":"authentication.k8s.io","kind":"selfsubjectreviews"}',
    )


def test_impersonate_service_account(
    server: EmulatorServer,
    emulator_pki: EmulatorPKI,
) -> None:
    sa = "system:serviceaccount:default:builder"
    info = user_info(
        call(server, emulator_pki, "proxy-token", "POST", SSR, [("Impersonate-User", sa)])
    )
    assert info == {
        "username": sa,
        "groups": [
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated",
        ],
    }
    with_group = [("Impersonate-User", sa), ("Impersonate-Group", "builders")]
    info = user_info(call(server, emulator_pki, "proxy-token", "POST", SSR, with_group))
    assert info == {"username": sa, "groups": ["builders", "system:authenticated"]}
    # Not a valid service account name (upper case): an ordinary user.
    odd = "system:serviceaccount:Default:builder"
    info = user_info(
        call(server, emulator_pki, "proxy-token", "POST", SSR, [("Impersonate-User", odd)])
    )
    assert info == {"username": odd, "groups": ["system:authenticated"]}


def test_impersonation_is_denied_per_item(
    server: EmulatorServer,
    emulator_pki: EmulatorPKI,
) -> None:
    """alice may impersonate users, nothing else; the first refused item decides the 403."""
    assert (
        call(server, emulator_pki, "alice-token", "GET", PODS, [("Impersonate-User", "bob")]).status
        == 200
    )
    cases = [
        (
            "eve-token",
            [("Impersonate-User", "bob")],
            'users "bob" is forbidden: User "eve" cannot impersonate resource "users" in API'
            ' group "" at the cluster scope: No policy matched.',
            '{"name":"bob","kind":"users"}',
        ),
        (
            "alice-token",
            [("Impersonate-User", "bob"), ("Impersonate-Group", "admins")],
            'groups "admins" is forbidden: User "alice" cannot impersonate resource "groups" in'
            ' API group "" at the cluster scope: No policy matched.',
            '{"name":"admins","kind":"groups"}',
        ),
        (
            "alice-token",
            [("Impersonate-User", "system:serviceaccount:kube-system:default")],
            'serviceaccounts "default" is forbidden: User "alice" cannot impersonate resource'
            ' "serviceaccounts" in API group "" in the namespace "kube-system": No policy matched.',
            '{"name":"default","kind":"serviceaccounts"}',
        ),
        (
            "alice-token",
            [("Impersonate-User", "bob"), ("Impersonate-Uid", "42")],
            'uids.authentication.k8s.io "42" is forbidden: User "alice" cannot impersonate'
            ' resource "uids" in API group "authentication.k8s.io" at the cluster scope: No'
            " policy matched.",
            '{"name":"42","group":"authentication.k8s.io","kind":"uids"}',
        ),
        (
            "alice-token",
            [("Impersonate-User", "bob"), ("Impersonate-Extra-acme.com%2fproject", "payments")],
            'userextras.authentication.k8s.io "payments" is forbidden: User "alice" cannot'
            ' impersonate resource "userextras/acme.com/project" in API group'
            ' "authentication.k8s.io" at the cluster scope: No policy matched.',
            '{"name":"payments","group":"authentication.k8s.io","kind":"userextras"}',
        ),
    ]
    for token, headers, message, details in cases:
        response = call(server, emulator_pki, token, "GET", PODS, headers)
        assert_forbidden(response, message, details)
        assert server.records()[-1]["impersonated_user"] is None


def test_denied_names_are_go_quoted_and_html_escaped(
    server: EmulatorServer,
    emulator_pki: EmulatorPKI,
) -> None:
    response = call(
        server, emulator_pki, "eve-token", "GET", PODS, [("Impersonate-User", '<"b">&')]
    )
    assert response.status == 403
    assert response.body == (
        b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"users'
        b' \\"\\u003c\\\\\\"b\\\\\\"\\u003e\\u0026\\" is forbidden: User \\"eve\\" cannot'
        b' impersonate resource \\"users\\" in API group \\"\\" at the cluster scope: No policy'
        b' matched.","reason":"Forbidden",'
        b'"details":{"name":"\\u003c\\"b\\"\\u003e\\u0026","kind":"users"},"code":403}\n'
    )


def test_authorization_then_applies_to_the_impersonated_user(
    server: EmulatorServer,
    emulator_pki: EmulatorPKI,
) -> None:
    response = call(
        server, emulator_pki, "proxy-token", "GET", PODS, [("Impersonate-User", "carol")]
    )
    assert_forbidden(
        response,
        'pods is forbidden: User "carol" cannot list resource "pods" in API group "" in the'
        ' namespace "default": No policy matched.',
        '{"kind":"pods"}',
    )


def test_groups_extras_or_uid_without_a_user_are_an_internal_error(
    server: EmulatorServer,
    emulator_pki: EmulatorPKI,
) -> None:
    """1.32 answers `responsewriters.InternalError` (master: a 400 BadRequest Status)."""
    cases = [
        ([("Impersonate-Group", "devs")], "[{Group  devs    }]"),
        ([("Impersonate-Uid", "7")], "[{UID  7  authentication.k8s.io/v1  }]"),
        (
            [
                ("Impersonate-User", ""),
                ("Impersonate-Extra-Scopes", "a&b"),
                ("Impersonate-Uid", "7"),
            ],
            "[{UserExtra  a&amp;b  authentication.k8s.io/v1  scopes}"
            " {UID  7  authentication.k8s.io/v1  }]",
        ),
    ]
    for headers, listed in cases:
        response = call(server, emulator_pki, "proxy-token", "GET", f"{PODS}?limit=1", headers)
        assert response.status == 500
        assert response.header("Content-Type") == "text/plain; charset=utf-8"
        assert response.header("X-Content-Type-Options") == "nosniff"
        assert (
            response.body
            == (
                f'Internal Server Error: "{PODS}?limit=1": requested {listed} without impersonating'
                " a user\n"
            ).encode()
        )


def test_an_empty_user_header_impersonates_nobody(
    server: EmulatorServer,
    emulator_pki: EmulatorPKI,
) -> None:
    response = call(server, emulator_pki, "alice-token", "POST", SSR, [("Impersonate-User", "")])
    assert user_info(response)["username"] == "alice"
    assert server.records()[-1]["impersonated_user"] is None


def test_impersonation_headers_are_removed() -> None:
    headers = [
        ("Accept", "*/*"),
        ("impersonate-user", "bob"),
        ("IMPERSONATE-GROUP", "g"),
        ("Impersonate-Uid", "1"),
        ("Impersonate-Extra-K", "v"),
        ("X-Impersonate-User", "kept"),
    ]
    outcome = impersonate(ALICE, headers, AlwaysAllow(), "/api")
    assert outcome.refusal is None
    assert outcome.user == UserInfo(
        "bob", uid="1", groups=("g", "system:authenticated"), extra={"k": ("v",)}
    )
    assert outcome.headers == [("Accept", "*/*"), ("X-Impersonate-User", "kept")]


def test_impersonating_anonymous_adds_unauthenticated() -> None:
    outcome = impersonate(ALICE, [("Impersonate-User", "system:anonymous")], AlwaysAllow(), "/")
    assert outcome.user == UserInfo("system:anonymous", groups=("system:unauthenticated",))
    assert impersonated_user([]) == UserInfo("", groups=("system:authenticated",))


# --- real kubectl: --as, --as-group, --as-uid ---------------------------------------------------


def kubectl_as(
    server: EmulatorServer, pki: EmulatorPKI, workdir: Path, token: str, *args: str
) -> subprocess.CompletedProcess[str]:
    config = write_kubeconfig(
        workdir / f"kubeconfig-{token}", server.url, pki.path("ca.crt"), {"token": token}
    )
    env = {"HOME": str(workdir), "KUBECONFIG": str(config)}
    return kubectl(config, "--cache-dir", str(workdir / "cache"), *args, env=env)


@pytest.mark.skipif(not Path(KUBECTL).exists(), reason="kubectl not installed")
def test_kubectl_whoami_through_impersonation(
    server: EmulatorServer,
    emulator_pki: EmulatorPKI,
    tmp_path: Path,
) -> None:
    result = kubectl_as(
        server, emulator_pki, tmp_path, "proxy-token",
        "--as", "alice", "--as-group", "devs", "--as-uid", "1001", "auth", "whoami", "-o", "json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    review = json.loads(result.stdout)
    assert review["status"]["userInfo"] == {
        "username": "alice",
        "uid": "1001",
        "groups": ["devs", "system:authenticated"],
    }
    record = server.records()[-1]
    assert record["authentication"]["user"]["username"] == PROXY_SA  # type: ignore[index]
    assert record["impersonated_user"]["username"] == "alice"  # type: ignore[index]

    denied = kubectl_as(
        server, emulator_pki, tmp_path, "eve-token", "--as", "bob", "get", "--raw", PODS
    )
    assert denied.returncode == 1
    assert (
        'Error from server (Forbidden): users "bob" is forbidden: User "eve" cannot impersonate'
        ' resource "users" in API group "" at the cluster scope: No policy matched.'
    ) in denied.stderr


def test_authorization_flags_are_validated_like_kube_apiserver(
    emulator_pki: EmulatorPKI,
    tmp_path: Path,
) -> None:
    policy = write_policy(tmp_path / "p.jsonl", POLICY)
    args = ["--tls-cert-file", "c", "--tls-private-key-file", "k"]
    parsed = config_from_args(
        parse_args(
            [*args, "--authorization-mode", "RBAC,ABAC", "--authorization-policy-file", str(policy)]
        )
    )
    assert (parsed.authorization_mode, parsed.authorization_policy_file) == (
        ("RBAC", "ABAC"),
        policy,
    )
    assert config_from_args(parse_args(args)).authorization_mode == ("RBAC",)
    cases: list[tuple[dict[str, object], str]] = [
        ({"authorization_mode": ("ABAC",)},
         "authorization-mode ABAC's authorization policy file not passed"),
        ({"authorization_policy_file": policy},
         "cannot specify --authorization-policy-file without mode ABAC"),
        ({"authorization_mode": ("Node",)}, 'authorization-mode "Node" is not a valid mode'),
        ({"authorization_mode": ("RBAC", "RBAC")},
         'authorization-mode ["RBAC" "RBAC"] has mode specified more than once'),
    ]  # fmt: skip
    for overrides, message in cases:
        with pytest.raises(ValueError) as error:
            build_authorization(kubeadm_config(emulator_pki, **overrides))
        assert str(error.value) == message
