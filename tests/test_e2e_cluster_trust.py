"""End to end: at start-up the proxy reads kube-system/extension-apiserver-authentication from
the API server (the emulator publishes it from its flags, as kube-apiserver does) and logs each
difference with its own settings. It serves only when none would cost users their identity
(upstream/trust_gate.py); tests/attacks/test_identity_config.py attacks the rest."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.support.harness import Emulator, Proxy, start_emulator, start_proxy_for
from tests.support.processes import Process

TRUST_LINE = re.compile(
    r"^\[[\d:.]+\] (kube-front-proxy: (?:cluster trust|the cluster trust|not serving).*)$"
)
MATCHED = (
    "kube-front-proxy: cluster trust checked on 127.0.0.1:{port}: the identity headers and the "
    "front-proxy certificate match kube-system/extension-apiserver-authentication"
)
UNLISTED = "does not list: stripped from client requests anyway"
SERVING = (
    "kube-front-proxy: cluster trust checked on 127.0.0.1:{port}: nothing above costs users "
    "their identity; serving"
)
NOT_SERVING = (
    "kube-front-proxy: not serving: every request gets 503 until the cluster trust check "
    "passes (retried every 10 s; upstream.check_cluster_trust: false turns the check off)"
)
REFUSED = "the proxy is not serving: it cannot confirm that the Kubernetes API server reads"


def trust_lines(proxy: Proxy, emulator: Emulator) -> list[str]:
    """The check's log lines, once it has logged (it runs in the background after start-up)."""
    proxy.process.wait_for(r"kube-front-proxy: (cluster trust|the cluster trust)")
    proxy.process.wait_for(r"reverse proxy to .* listening")
    return [
        m.group(1).replace(str(emulator.port), "{port}")
        for line in proxy.process.output().splitlines()
        if (m := TRUST_LINE.match(line))
    ]


def run(pki: Path, workdir: Path, *flags: str) -> tuple[Emulator, Proxy]:
    emulator = start_emulator(pki, workdir, "-q", *flags)
    try:
        return emulator, start_proxy_for(pki, workdir / "proxy", emulator.port)
    except BaseException:
        emulator.process.stop()
        raise


@pytest.mark.parametrize(
    ("flags", "expected", "user"),
    [
        ([], [MATCHED], "alice"),
        (
            ["--requestheader-username-headers", "X-Remote-User,X-Other",
             "--requestheader-group-headers", "X-Remote-Group,X-Group-2"],
            ["kube-front-proxy: cluster trust: identity.username_headers is [X-Remote-User] but "
             "the API server reads --requestheader-username-headers [X-Remote-User, X-Other]: "
             f"the API server also reads X-Other, which identity.username_headers {UNLISTED}",
             "kube-front-proxy: cluster trust: identity.group_headers is [X-Remote-Group] but "
             "the API server reads --requestheader-group-headers [X-Remote-Group, X-Group-2]: "
             f"the API server also reads X-Group-2, which identity.group_headers {UNLISTED}",
             SERVING],
            "alice",
        ),
        (
            ["--requestheader-username-headers", "X-Other"],
            ["kube-front-proxy: the cluster trust check could not run: the API server did not "
             "take the proxy for a front proxy (401): upstream.client_cert is not signed by its "
             "--requestheader-client-ca-file, its CN is not in --requestheader-allowed-names, or "
             "--requestheader-username-headers does not list identity.username_headers[0] "
             "X-Remote-User", NOT_SERVING],
            None,
        ),
    ],
    ids=["matching", "names-the-config-does-not-list", "username-header-not-read"],
)  # fmt: skip
def test_the_proxy_logs_what_differs_and_serves_only_if_users_keep_their_identity(
    pki: Path, tmp_path: Path, flags: list[str], expected: list[str], user: str | None
) -> None:
    emulator, proxy = run(pki, tmp_path, *flags)
    try:
        assert trust_lines(proxy, emulator) == expected
        check = [
            r for r in emulator.requests() if "extension-apiserver-authentication" in r["path"]
        ]
        assert len(check) == 1 and check[0]["method"] == "GET"
        result = proxy.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
        if user:
            assert (result.returncode, result.stdout) == (0, user), result.stderr
        else:
            # Not served: the proxy's own 503, and nothing reaches the API server.
            assert REFUSED in result.stderr, result.stderr
            assert emulator.requests() == check
    finally:
        proxy.process.stop()
        emulator.process.stop()


def test_another_allowed_name_where_the_client_ca_trusts_the_proxy_too(
    pki: Path, tmp_path: Path
) -> None:
    """Front-proxy CA also in --client-ca-file: the proxy's certificate, refused as a front
    proxy, logs in as plain user front-proxy-client (x509.go's verifySubject fails, then the
    x509 authenticator takes it), so the check can read the ConfigMap and name the CN. Every
    request would be that user, the identity headers ignored: the proxy does not serve."""
    bundle = tmp_path / "client-cas.crt"
    bundle.write_bytes((pki / "ca.crt").read_bytes() + (pki / "front-proxy-ca.crt").read_bytes())
    # Not start_emulator: its --requestheader-allowed-names front-proxy-client cannot be undone.
    log = tmp_path / "emulator-requests.jsonl"
    process = Process(
        [sys.executable, "-m", "tests.emulator", "-q", "--secure-port", "0",
         "--tls-cert-file", str(pki / "apiserver.crt"),
         "--tls-private-key-file", str(pki / "apiserver.key"),
         "--client-ca-file", str(bundle),
         "--requestheader-client-ca-file", str(pki / "front-proxy-ca.crt"),
         "--requestheader-allowed-names", "aggregator", "--request-log", str(log)],
        tmp_path / "emulator.out",
    )  # fmt: skip
    port = int(process.wait_for(r"listening on https://127\.0\.0\.1:(\d+)").group(1))
    emulator = Emulator(process, port, log)
    try:
        proxy = start_proxy_for(pki, tmp_path / "proxy", emulator.port)
    except BaseException:
        process.stop()
        raise
    try:
        assert trust_lines(proxy, emulator) == [
            "kube-front-proxy: cluster trust: upstream.client_cert has CN front-proxy-client but "
            "the API server's --requestheader-allowed-names is [aggregator]",
            NOT_SERVING,
        ]
        result = proxy.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
        assert REFUSED in result.stderr, result.stderr
    finally:
        proxy.process.stop()
        process.stop()
