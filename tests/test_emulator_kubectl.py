"""Real kubectl (/usr/bin/kubectl, 1.32) straight against the emulator, x509 client cert auth."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.emulator import EmulatorServer
from tests.support.certificates import issue
from tests.support.emulator_pki import EmulatorPKI

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"

pytestmark = pytest.mark.skipif(not Path(KUBECTL).exists(), reason="kubectl not installed")


@pytest.fixture(scope="module")
def kubeconfig(
    emulator_server: EmulatorServer,
    emulator_pki: EmulatorPKI,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """A kubeconfig for user jane (O=devs, O=system:masters), certificate from --client-ca-file."""
    workdir = tmp_path_factory.mktemp("kubectl")
    crt, key = emulator_pki.write(
        issue(emulator_pki.cluster_ca, "jane", organizations=["devs", "system:masters"]), "jane"
    )
    path = workdir / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {
            "server": emulator_server.url,
            "certificate-authority": str(emulator_pki.path("ca.crt"))}}],
        "users": [{"name": "jane", "user": {
            "client-certificate": str(crt), "client-key": str(key)}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "jane"}}],
    }))  # fmt: skip
    return path


def kubectl(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    home = kubeconfig.parent
    env = {**os.environ, "HOME": str(home), "KUBECONFIG": str(kubeconfig)}
    return subprocess.run(
        [KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(home / "cache"), *args],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, env=env,
    )  # fmt: skip


def test_kubectl_get_pods(kubeconfig: Path, emulator_server: EmulatorServer) -> None:
    result = kubectl(kubeconfig, "get", "pods")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert [line.split()[:4] for line in lines[1:]] == [
        ["nginx-1", "1/1", "Running", "0"],
        ["nginx-2", "1/1", "Running", "0"],
    ]
    jane = [r for r in emulator_server.records() if r["peer_cert_cn"] == "jane"]
    assert jane and all(r["authentication"]["authenticator"] == "x509" for r in jane)
    assert all(r["status"] == 200 for r in jane)


def test_kubectl_auth_whoami(kubeconfig: Path) -> None:
    result = kubectl(kubeconfig, "auth", "whoami", "-o", "json")
    assert result.returncode == 0, result.stderr
    review = json.loads(result.stdout)
    assert review["kind"] == "SelfSubjectReview"
    info = review["status"]["userInfo"]
    assert info["username"] == "jane"
    assert info["groups"] == ["devs", "system:masters", "system:authenticated"]
    [credential] = info["extra"]["authentication.kubernetes.io/credential-id"]
    assert credential.startswith("X509SHA256=")


def test_kubectl_get_pod_and_missing_pod(kubeconfig: Path) -> None:
    result = kubectl(kubeconfig, "get", "pod", "nginx-2", "-o", "jsonpath={.status.podIP}")
    assert (result.returncode, result.stdout) == (0, "10.244.0.12"), result.stderr
    missing = kubectl(kubeconfig, "get", "pod", "nope")
    assert missing.returncode == 1
    assert 'Error from server (NotFound): pods "nope" not found' in missing.stderr
