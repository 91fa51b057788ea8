"""Saved flows (mitmdump -w) say who did what, and carry no password."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mitmproxy import http, io

from tests.support.harness import Emulator, start_proxy_for
from tests.support.users import basic_header, password_of

WRONG_PASSWORD = "Wr0ng-but-close-pässword"


def test_saved_flows_carry_identity_and_no_secret(
    pki: Path, emulator: Emulator, tmp_path: Path
) -> None:
    flows_file = tmp_path / "flows.mitm"
    proxy = start_proxy_for(pki, tmp_path, emulator.port, "-w", str(flows_file))
    try:
        assert proxy.whoami("alice")["username"] == "alice"
        status, _, _ = proxy.raw("GET", "/api", [basic_header("alice", WRONG_PASSWORD)])
        assert status == 401
        status, _, _ = proxy.raw("GET", "/api", [basic_header("sha1-user", "nope")])
        assert status == 401
    finally:
        proxy.process.stop()  # mitmdump flushes the flow file on exit

    raw = flows_file.read_bytes()
    log = proxy.process.output().encode()
    attempts = [("alice", password_of("alice")), ("alice", WRONG_PASSWORD), ("sha1-user", "nope")]
    for user, secret in attempts:
        encoded = basic_header(user, secret)[1].split()[1].encode()
        for blob in (raw, log):
            assert secret.encode() not in blob and encoded not in blob
    assert b"Authorization" not in raw and b"authorization" not in raw

    with flows_file.open("rb") as f:
        flows = [fl for fl in io.FlowReader(f).stream() if isinstance(fl, http.HTTPFlow)]
    ok = [fl for fl in flows if fl.metadata.get("k8s_user") == "alice"]
    refused = [fl for fl in flows if "k8s_refused" in fl.metadata]
    assert ok and all(fl.response and fl.response.status_code < 400 for fl in ok)
    assert ok[0].metadata["k8s_groups"] == ["developers", "system:masters", "a,b"]
    assert sorted(fl.metadata["k8s_claimed_user"] for fl in refused) == ["alice", "sha1-user"]
    assert {fl.metadata["k8s_refused"] for fl in refused} == {"wrong password"}

    # The filter recipe of docs/operations.md (Flows), on the saved file.
    out = subprocess.run(
        [str(Path(sys.executable).parent / "mitmdump"), "-nr", str(flows_file),
         "--set", "flow_detail=1", '~meta "k8s_user: alice$"'],
        capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    assert "authentication.k8s.io" in out and out.count(" << ") == len(ok)
