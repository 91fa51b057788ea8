"""Real kubectl (/usr/bin/kubectl, 1.32) straight against the emulator, x509 client cert auth."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.emulator import EmulatorServer
from tests.support.certificates import issue
from tests.support.configs import write_kubeconfig
from tests.support.emulator_pki import EmulatorPKI
from tests.support.processes import kubectl as run_kubectl

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
    return write_kubeconfig(
        workdir / "kubeconfig",
        emulator_server.url,
        emulator_pki.path("ca.crt"),
        {"client-certificate": str(crt), "client-key": str(key)},
    )


def kubectl(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    home = kubeconfig.parent
    env = {"HOME": str(home), "KUBECONFIG": str(kubeconfig)}
    return run_kubectl(kubeconfig, "--cache-dir", str(home / "cache"), *args, env=env)


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
