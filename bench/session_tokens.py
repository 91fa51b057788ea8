#!/usr/bin/env python3
"""What a login costs the proxy, per request, in process: Basic credentials whose check is
remembered (the credential cache) against a session token, and issuing a token.

    .venv/bin/python bench/session_tokens.py [--logins 20000]

Prints the mean time of one `Login.authenticate` (lock-out bookkeeping included) for each,
and the memory the remembered signatures take when full.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "addon"))
sys.path.insert(0, str(REPO / "certs"))

import devpki  # noqa: E402
from kube_front_proxy.authn.login import Login  # noqa: E402
from kube_front_proxy.authn.session_tokens import MAX_VERIFIED, Basis  # noqa: E402
from kube_front_proxy.authn.token_endpoint import TOKEN_PATH, answer  # noqa: E402
from kube_front_proxy.config.runtime import build_runtime  # noqa: E402
from kube_front_proxy.identity.headers import Identity  # noqa: E402
from tests.support.configs import htpasswd_add, proxy_config, write_yaml  # noqa: E402
from tests.support.users import basic_header  # noqa: E402


async def mean_seconds(login: Login, authorization: str, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        outcome = await login.authenticate([authorization], "10.0.0.1")
        assert outcome.identity is not None, outcome.reason
    return (time.perf_counter() - started) / count


async def measure(directory: Path, count: int) -> None:
    pki = directory / "pki"
    devpki.make_dev_pki(pki, force=True)
    htpasswd_add(directory / "htpasswd", "alice", "alice-pw", "bcrypt")
    write_yaml(directory / "users.yaml", {"users": {"alice": {"groups": ["dev"]}}})
    (directory / "session-key").write_text(base64.b64encode(os.urandom(32)).decode())
    authn = {"session_tokens": {"signing_key_file": "session-key"}}
    runtime = build_runtime(
        write_yaml(directory / "config.yaml", proxy_config(pki, 6443, 8443, authn=authn))
    )
    login, tokens = runtime.login, runtime.login.session_tokens
    basic = basic_header("alice", "alice-pw")[1]
    outcome = await login.authenticate([basic], "10.0.0.1")  # the one bcrypt check
    started = time.perf_counter()
    for _ in range(count // 10):
        given = await answer("POST", TOKEN_PATH, outcome, tokens)
    issue = (time.perf_counter() - started) / (count // 10)
    assert given.issued is not None
    token = given.issued.token
    print(f"token: {len(token)} characters")
    print(f"Basic, check remembered: {await mean_seconds(login, basic, count) * 1e6:.1f} µs")
    bearer = await mean_seconds(login, f"Bearer {token}", count)
    print(f"session token:           {bearer * 1e6:.1f} µs")
    print(f"issuing a token:         {issue * 1e6:.1f} µs")
    # The remembered signatures, full: MAX_VERIFIED tokens of different users.
    assert tokens is not None
    many = [tokens.issue(Identity(f"user-{i:05d}"), Basis("htpasswd", b"h")).token
            for i in range(MAX_VERIFIED)]  # fmt: skip
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for token in many:
        tokens.verify(token)
    grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    print(f"{MAX_VERIFIED} remembered signatures: {grown / 1e6:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--logins", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(measure(Path(directory), args.logins))


if __name__ == "__main__":
    main()
