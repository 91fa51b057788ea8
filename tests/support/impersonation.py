"""The proxy in impersonation mode: it logs in with a service account's token, and the API server
(the emulator with --token-auth-file) knows that account."""

from __future__ import annotations

from pathlib import Path

from .harness import Proxy, start_proxy_for

SA = "system:serviceaccount:kube-system:kube-front-proxy"
SA_TOKEN = "sa-token-5f0c1d2e3b4a"


def impersonating_proxy(pki: Path, workdir: Path, port: int, *extra: str) -> Proxy:
    (workdir / "sa-token").write_text(SA_TOKEN + "\n")
    return start_proxy_for(
        pki, workdir, port, *extra,
        identity={"mode": "impersonate"},
        upstream={"token_file": "sa-token", "client_cert": None, "client_key": None},
    )  # fmt: skip
