"""deploy/: the Kubernetes manifests and the systemd unit, checked offline.

The manifests are validated against Kubernetes 1.32's own OpenAPI schemas (kubernetes-validate
bundles them; strict: unknown fields are errors), rendered with the real `kubectl kustomize`,
and the ConfigMap's config.yaml is loaded by the proxy itself with every file laid out where
the Deployment mounts it.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from kube_front_proxy.config.runtime import build_runtime
from kube_front_proxy.config.settings import load_settings
from tests.support.configs import htpasswd_add
from tests.support.processes import BIN, KUBECTL, REPO

MANIFESTS = REPO / "deploy" / "kubernetes"
UNIT = REPO / "deploy" / "systemd" / "kube-front-proxy@.service"
KUBERNETES = "1.32.0"


def manifest(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((MANIFESTS / name).read_text())
    return data


def kinds() -> list[str]:
    return sorted(p.name for p in MANIFESTS.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("name", kinds())
def test_manifest_is_valid_for_kubernetes_1_32(name: str) -> None:
    kubernetes_validate.validate(manifest(name), KUBERNETES, strict=True)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (["spec", "replicas"], "three", "'three' is not of type 'integer'"),
        (["spec", "template", "spec", "containers", 0, "readinessprobe"], {},
         "Additional properties are not allowed ('readinessprobe' was unexpected)"),
        (["spec", "template", "spec", "volumes", 1, "secret", "defaultMode"], "0o440",
         "'0o440' is not of type 'integer'"),
    ],
)  # fmt: skip
def test_the_validator_refuses_a_broken_deployment(
    path: list[str | int], value: object, message: str
) -> None:
    broken = copy.deepcopy(manifest("deployment.yaml"))
    parent = broken
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    with pytest.raises(kubernetes_validate.ValidationError) as error:
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)
    assert message in str(error.value)


def test_kustomize_renders_every_manifest() -> None:
    out = subprocess.run([KUBECTL, "kustomize", str(MANIFESTS)], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    rendered = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in yaml.safe_load_all(out))
    assert rendered == [
        "ConfigMap/kube-front-proxy-config",
        "Deployment/kube-front-proxy",
        "Namespace/kube-front-proxy",
        "NetworkPolicy/kube-front-proxy",
        "PodDisruptionBudget/kube-front-proxy",
        "Secret/kube-front-proxy-front-proxy",
        "Secret/kube-front-proxy-htpasswd",
        "Secret/kube-front-proxy-serving",
        "Service/kube-front-proxy",
    ]


def container() -> dict[str, Any]:
    spec = manifest("deployment.yaml")["spec"]["template"]["spec"]
    assert len(spec["containers"]) == 1
    return dict(spec["containers"][0], volumes=spec["volumes"])


def lay_out_mounts(root: Path, pki: Path) -> dict[str, Path]:
    """Write every ConfigMap and Secret key where the Deployment mounts it, under root.

    The Secrets hold placeholders; the development PKI and a real htpasswd stand in for them.
    """
    stand_ins = {
        ("kube-front-proxy-serving", "tls.crt"): pki / "proxy-server.crt",
        ("kube-front-proxy-serving", "tls.key"): pki / "proxy-server.key",
        ("kube-front-proxy-front-proxy", "tls.crt"): pki / "front-proxy-client.crt",
        ("kube-front-proxy-front-proxy", "tls.key"): pki / "front-proxy-client.key",
        ("kube-front-proxy-front-proxy", "ca.crt"): pki / "ca.crt",
    }
    htpasswd = root / "htpasswd-stand-in"
    for user in ("alice", "bob"):
        htpasswd_add(htpasswd, user, f"{user}-password", "bcrypt")
    stand_ins[("kube-front-proxy-htpasswd", "htpasswd")] = htpasswd
    sources = {m["metadata"]["name"]: m for m in map(manifest, kinds())}
    c = container()
    volumes = {v["name"]: v for v in c["volumes"]}
    mounts = {}
    for mount in c["volumeMounts"]:
        directory = root / mount["mountPath"].lstrip("/")
        directory.mkdir(parents=True)
        mounts[mount["mountPath"]] = directory
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            for key, text in sources[volume["configMap"]["name"]]["data"].items():
                (directory / key).write_text(text)
        elif "secret" in volume:
            name = volume["secret"]["secretName"]
            for key in sources[name]["stringData"]:
                shutil.copy(stand_ins.pop((name, key)), directory / key)
    assert stand_ins == {}, "keys the Secrets no longer have"
    return mounts


def test_configmap_config_loads_with_the_files_where_the_deployment_mounts_them(
    pki: Path, tmp_path: Path
) -> None:
    c = container()
    args = c["command"]
    config_in_pod = next(a.split("=", 1)[1] for a in args if a.startswith("k8s_auth_config="))
    confdir_in_pod = next(a.split("=", 1)[1] for a in args if a.startswith("confdir="))
    mounts = lay_out_mounts(tmp_path, pki)
    config = tmp_path / config_in_pod.lstrip("/")
    # Absolute paths in config.yaml name places in the pod: put them under the laid-out root.
    config.write_text(re.sub(r"(?m)(: )/", rf"\g<1>{tmp_path}/", config.read_text()))

    runtime = build_runtime(config)  # reads every certificate, key, htpasswd and users.yaml

    s = runtime.settings
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert (s.listen_host, s.listen_port) == ("0.0.0.0", ports["https"])
    assert s.metrics_listen == ("0.0.0.0", ports["metrics"])
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        assert c[probe]["httpGet"] == {"path": path, "port": "metrics"}
    assert sorted(runtime.login.identities) == ["alice", "bob"]
    # What the proxy writes goes to the two writable emptyDir mounts; the rest is read-only.
    writable = {m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")}
    assert s.audit is not None
    assert writable == {confdir_in_pod, str(s.audit.path.parent).removeprefix(str(tmp_path))}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert mounts.keys() >= writable


def services() -> list[dict[str, Any]]:
    return [m for m in map(manifest, kinds()) if m["kind"] == "Service"]


def test_no_service_exposes_the_metrics_port() -> None:
    # /metrics answers without a login: users must not reach it through a Service.
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    for service in services():
        for port in service["spec"]["ports"]:
            assert port["targetPort"] not in ("metrics", ports["metrics"]), service["metadata"]
            assert port["port"] != ports["metrics"]
    (users,) = services()
    assert [p["targetPort"] for p in users["spec"]["ports"]] == ["https"]


def test_the_user_facing_service_keeps_client_addresses() -> None:
    # Lock-out budgets and connections.max_per_client count per client address: with the
    # default policy (Cluster), kube-proxy would replace it with a node's address.
    (users,) = services()
    assert users["spec"]["type"] in ("LoadBalancer", "NodePort")
    assert users["spec"]["externalTrafficPolicy"] == "Local"


Labels = dict[str, str]


def _selects(selector: dict[str, Any], labels: Labels) -> bool:
    assert set(selector) <= {"matchLabels"}, "extend _selects for matchExpressions"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def admitted(policy: dict[str, Any], port: str, namespace: Labels, pod: Labels | None) -> bool:
    """Whether the NetworkPolicy lets a peer reach the named port of the pods it selects: a pod
    (its namespace's and its own labels), or an address outside the cluster (pod None)."""
    for rule in policy["spec"]["ingress"]:
        if "ports" in rule and port not in [p["port"] for p in rule["ports"]]:
            continue
        if "from" not in rule:
            return True
        for peer in rule["from"]:
            assert set(peer) <= {"namespaceSelector", "podSelector"}, "extend admitted()"
            if pod is None:
                continue
            if "namespaceSelector" in peer:
                in_namespace = _selects(peer["namespaceSelector"], namespace)
            else:
                in_namespace = namespace.get("kubernetes.io/metadata.name") == "kube-front-proxy"
            if in_namespace and _selects(peer.get("podSelector", {}), pod):
                return True
    return False


def test_the_network_policy_lets_only_prometheus_reach_the_metrics_port() -> None:
    policy = manifest("networkpolicy.yaml")
    pod = manifest("deployment.yaml")["spec"]["template"]["metadata"]["labels"]
    assert _selects(policy["spec"]["podSelector"], pod)
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert {p["name"] for p in container()["ports"]} == {"https", "metrics"}

    monitoring = {"kubernetes.io/metadata.name": "monitoring"}
    prometheus = {"app.kubernetes.io/name": "prometheus"}
    own = {"kubernetes.io/metadata.name": "kube-front-proxy"}
    other = {"kubernetes.io/metadata.name": "default"}
    for namespace, peer in ((other, {"app": "x"}), (own, pod), (monitoring, prometheus),
                            ({}, None)):  # fmt: skip
        assert admitted(policy, "https", namespace, peer)
    assert admitted(policy, "metrics", monitoring, prometheus)
    for namespace, peer in ((other, prometheus), (own, pod), (monitoring, {"app": "grafana"}),
                            ({}, None)):  # fmt: skip
        assert not admitted(policy, "metrics", namespace, peer), (namespace, peer)


def test_prometheus_is_told_the_metrics_port() -> None:
    template = manifest("deployment.yaml")["spec"]["template"]
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(ports["metrics"])


def test_containerfile_installs_the_entry_script_the_deployment_runs() -> None:
    containerfile = (REPO / "deploy" / "Containerfile").read_text()
    script = container()["command"][2]
    assert script == "/app/k8s_auth.py"
    assert f"addon/k8s_auth.py {script}" in containerfile
    assert "USER 10001:10001" in containerfile
    pod = manifest("deployment.yaml")["spec"]["template"]["spec"]["securityContext"]
    assert (pod["runAsUser"], pod["runAsGroup"]) == (10001, 10001)


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze")
def test_systemd_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    # The unit names /opt/kube-front-proxy; systemd-analyze checks that ExecStart exists.
    unit = tmp_path / UNIT.name
    text = UNIT.read_text().replace("/opt/kube-front-proxy/.venv/bin", str(BIN))
    unit.write_text(text.replace("/opt/kube-front-proxy", str(REPO)))
    verify = subprocess.run(["systemd-analyze", "verify", "kube-front-proxy@main.service"],
                            cwd=tmp_path, capture_output=True, text=True)  # fmt: skip
    assert (verify.returncode, verify.stderr) == (0, "")
    security = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)],
                              capture_output=True, text=True)  # fmt: skip
    exposure = re.search(r"Overall exposure level for .*: ([\d.]+)", security.stdout)
    assert exposure, security.stdout + security.stderr
    assert float(exposure.group(1)) <= 2.0


# The optional Redis component (deploy/kubernetes/redis, docs/scale-out.md).
REDIS_COMPONENT = MANIFESTS / "redis"


@pytest.mark.parametrize("name", ["secret-redis.yaml", "redis.yaml", "networkpolicy-redis.yaml"])
def test_redis_component_manifest_is_valid_for_kubernetes_1_32(name: str) -> None:
    for document in yaml.safe_load_all((REDIS_COMPONENT / name).read_text()):
        kubernetes_validate.validate(document, KUBERNETES, strict=True)


def render_with_redis(tmp_path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """The base with the component, as `components: [redis]` in its kustomization renders it."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    base = Path(os.path.relpath(MANIFESTS, overlay))
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": [str(base)], "components": [str(base / "redis")]})
    )
    out = subprocess.run([KUBECTL, "kustomize", str(overlay)], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out)}


def test_the_redis_component_gives_the_proxy_redis_and_its_password_from_a_secret(
    tmp_path: Path,
) -> None:
    docs = render_with_redis(tmp_path)
    for document in docs.values():
        kubernetes_validate.validate(document, KUBERNETES, strict=True)
    config_map = docs[("ConfigMap", "kube-front-proxy-config")]["data"]
    config = yaml.safe_load(config_map["config.yaml"])
    base = yaml.safe_load(manifest("configmap.yaml")["data"]["config.yaml"])
    redis = config.pop("state")["redis"]
    assert config == base  # the component adds state.redis and nothing else
    assert config_map["users.yaml"] == manifest("configmap.yaml")["data"]["users.yaml"]
    # The URL names the component's Service and port.
    service = docs[("Service", "kube-front-proxy-redis")]
    host_port = redis["url"].removeprefix("redis://").rpartition("/")[0]
    assert host_port == f"{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    # The proxy reads the password from the Secret Redis takes it from.
    secret = docs[("Secret", "kube-front-proxy-redis")]
    proxy = docs[("Deployment", "kube-front-proxy")]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in proxy["volumes"]}
    (container,) = proxy["containers"]
    directory, key = redis["password_file"].rsplit("/", 1)
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == directory]
    assert mount["readOnly"] is True
    assert volumes[mount["name"]]["secret"]["secretName"] == secret["metadata"]["name"]
    assert key in secret["stringData"]
    server = docs[("Deployment", "kube-front-proxy-redis")]["spec"]["template"]["spec"]
    (redis_container,) = server["containers"]
    (env,) = redis_container["env"]
    assert env["valueFrom"]["secretKeyRef"] == {"name": secret["metadata"]["name"], "key": key}
    assert redis_container["args"][:2] == ["--requirepass", f"$({env['name']})"]
    # The proxy's own loader takes the section.
    path = tmp_path / "config.yaml"
    path.write_text(config_map["config.yaml"])
    settings = load_settings(path)
    assert settings.redis is not None and settings.redis.url == redis["url"]
    # Only the proxy's pods reach Redis.
    policy = docs[("NetworkPolicy", "kube-front-proxy-redis")]
    pod = docs[("Deployment", "kube-front-proxy")]["spec"]["template"]["metadata"]["labels"]
    own = {"kubernetes.io/metadata.name": "kube-front-proxy"}
    redis_pod = docs[("Deployment", "kube-front-proxy-redis")]["spec"]["template"]["metadata"]
    assert _selects(policy["spec"]["podSelector"], redis_pod["labels"])
    assert admitted(policy, "redis", own, pod)
    assert not admitted(policy, "redis", own, {"app": "other"})
    assert not admitted(policy, "redis", {"kubernetes.io/metadata.name": "default"}, pod)
    assert not admitted(policy, "redis", {}, None)
    # The proxy's own policy does not select the Redis pods.
    assert not _selects(manifest("networkpolicy.yaml")["spec"]["podSelector"], redis_pod["labels"])
