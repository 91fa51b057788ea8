#!/usr/bin/env python3
"""Does the time of a refused login tell whether the user name exists?

    .venv/bin/python bench/user_enumeration.py [--repeat 11] [--names 20] [--bcrypt-cost 10]

Writes an htpasswd file with Apache's `htpasswd`, one user per scheme, the bcrypt user first
(an unknown name used to be checked against the first entry), and measures:

- in process, `Htpasswd.verify` (the hash work a refused login costs): the median of --repeat
  checks of a wrong password for each known user, and of each of --names unknown names;
- through the real proxy (emulator, mitmdump, TLS, HTTP/1.1 keep-alive), the median time to the
  401 for the same attempts (lock-out thresholds raised so that every attempt is hashed).

An unknown name is "fast" when its median is under half the bcrypt user's. Unknown names tell
nothing when the share of fast unknown names matches the share of fast-scheme users (here 4 of
5), and each name keeps its class from one attempt to the next.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import secrets
import ssl
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "addon"))
sys.path.insert(0, str(REPO / "certs"))

import devpki  # noqa: E402
from kube_front_proxy.authn.htpasswd import Htpasswd  # noqa: E402
from kube_front_proxy.config.settings import FileRef  # noqa: E402
from tests.support.configs import HTPASSWD_FLAGS, htpasswd_add  # noqa: E402
from tests.support.harness import start_emulator, start_proxy_for  # noqa: E402

SCHEMES = ["bcrypt", "apr1", "sha256", "sha512", "sha1"]


def median_ms(repeat: int, attempt: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        attempt()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def report(title: str, known: dict[str, float], unknown: list[float]) -> None:
    print(f"\n{title} (median ms)")
    for scheme, ms in known.items():
        print(f"  known user, wrong password  {scheme:7} {ms:9.3f}")
    slow = known["bcrypt"]
    fast = [ms for ms in unknown if ms < slow / 2]
    print(f"  unknown names ({len(unknown)})          min {min(unknown):.3f}  median "
          f"{statistics.median(unknown):.3f}  max {max(unknown):.3f}")  # fmt: skip
    fast_users = sum(1 for s, ms in known.items() if ms < slow / 2)
    print(
        f"  fast unknown names: {len(fast)}/{len(unknown)} "
        f"({100 * len(fast) / len(unknown):.0f}%); fast-scheme users: {fast_users}/{len(known)}"
    )


def in_process(htpasswd: Htpasswd, names: list[str], repeat: int) -> None:
    known = {s: median_ms(repeat, lambda s=s: htpasswd.verify(f"{s}-user", "wrong"))
             for s in SCHEMES}  # fmt: skip
    unknown = [median_ms(repeat, lambda n=n: htpasswd.verify(n, "wrong")) for n in names]
    report("Htpasswd.verify, in process", known, unknown)
    by_hash = {htpasswd.hash_of(f"{s}-user"): s for s in SCHEMES}
    counts = Counter(by_hash[htpasswd.decoy(n)] for n in names)
    against = ", ".join(f"{s} {counts[s]}" for s in SCHEMES)
    print(f"  unknown names checked against: {against}")


def through_proxy(workdir: Path, names: list[str], repeat: int) -> None:
    pki = workdir / "pki"
    devpki.make_dev_pki(pki, force=True)
    (workdir / "emulator").mkdir()
    emulator = start_emulator(pki, workdir / "emulator")
    lockout = {"per_address": 1_000_000, "per_user_and_address": 1_000_000,
               "per_user": 1_000_000}  # fmt: skip
    proxy = start_proxy_for(pki, workdir, emulator.port,
                            authn={"users": None, "lockout": lockout})  # fmt: skip
    context = ssl.create_default_context(cafile=str(pki / "proxy-ca.crt"))
    conn = http.client.HTTPSConnection("127.0.0.1", proxy.port, context=context, timeout=30)

    def attempt(user: str) -> None:
        token = base64.b64encode(f"{user}:wrong".encode()).decode()
        conn.request("GET", "/api", headers={"Authorization": f"Basic {token}"})
        response = conn.getresponse()
        response.read()
        assert response.status == 401, response.status

    try:
        attempt("warm-up")
        known = {s: median_ms(repeat, lambda s=s: attempt(f"{s}-user")) for s in SCHEMES}
        unknown = [median_ms(repeat, lambda n=n: attempt(n)) for n in names]
    finally:
        conn.close()
        proxy.process.stop()
        emulator.process.stop()
    report("401 through the proxy", known, unknown)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--names", type=int, default=20)
    parser.add_argument("--bcrypt-cost", type=int, default=10)
    args = parser.parse_args()
    HTPASSWD_FLAGS["bcrypt"] = ["-B", "-C", str(args.bcrypt_cost)]
    names = [f"nobody-{secrets.token_hex(4)}" for _ in range(args.names)]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for scheme in SCHEMES:
            htpasswd_add(workdir / "htpasswd", f"{scheme}-user", "right", scheme)
        ref = FileRef(workdir / "htpasswd", workdir / "config.yaml", "authn.htpasswd")
        print(f"htpasswd: {', '.join(SCHEMES)} (bcrypt cost {args.bcrypt_cost}, listed first); "
              f"{args.repeat} attempts per name")  # fmt: skip
        in_process(Htpasswd(ref), names, args.repeat)
        through_proxy(workdir, names, args.repeat)


if __name__ == "__main__":
    main()
