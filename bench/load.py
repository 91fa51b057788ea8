#!/usr/bin/env python3
"""Load test: many clients, mixed good and bad logins and watches, nothing lost.

    .venv/bin/python bench/load.py [--clients 50] [--requests 20000]

Starts the API-server emulator and the proxy; then, per pass, N client threads, each on its own
keep-alive connection, send their share of the requests: mostly good logins (GET pods, each
with a unique X-Request-Id), every 10th a wrong password, every 50th a short watch. It checks
that every request got exactly one answer, that every good one reached the API server exactly
once (by X-Request-Id in the emulator's request log) and no bad one did, that nothing got a
5xx, and reports the proxy's RSS before and after each pass.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import ssl
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "addon"))
sys.path.insert(0, str(REPO / "certs"))

import devpki  # noqa: E402
from tests.support.harness import start_emulator, start_proxy_for  # noqa: E402
from tests.support.users import basic_header, password_of  # noqa: E402


@dataclass
class Report:
    clients: int
    requests: int
    seconds: float = 0.0
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: list[str] = field(default_factory=list)
    good_ids: set[str] = field(default_factory=set)
    upstream_ids: collections.Counter[str] = field(default_factory=collections.Counter)
    bad_ids_upstream: int = 0
    rss_before_kib: int = 0
    # RSS after each pass of the same load: flat from the second pass on means no leak.
    rss_after_kib: list[int] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return len(self.good_ids - set(self.upstream_ids))

    @property
    def duplicated(self) -> int:
        return sum(1 for n in self.upstream_ids.values() if n > 1)

    @property
    def server_errors(self) -> int:
        return sum(n for code, n in self.statuses.items() if code.startswith("5"))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def client(
    port: int,
    ca: Path,
    index: int,
    count: int,
    clients: int,
    pass_: int,
    report: Report,
    lock: threading.Lock,
) -> None:
    context = ssl.create_default_context(cafile=str(ca))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
    good = dict([basic_header("alice", password_of("alice"))])
    bad = dict([basic_header("mallory", "guess")])
    for i in range(count):
        rid = f"load-{pass_}-{index}-{i}"
        # The mix rotates with the client index, so every client gets its share of each kind.
        n = i + index
        if n % 10 == 9:
            headers, path = bad, "/api/v1/namespaces/default/pods"
        elif n % 50 == 0:
            headers, path = good, "/api/v1/namespaces/default/pods?watch=true&timeoutSeconds=1"
        else:
            headers, path = good, "/api/v1/namespaces/default/pods"
        try:
            conn.request("GET", path, headers={**headers, "X-Request-Id": rid})
            response = conn.getresponse()
            response.read()
            code = str(response.status)
        except (OSError, http.client.HTTPException) as e:
            code = f"error {type(e).__name__}"
            conn.close()
            conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
        with lock:
            report.statuses[code] += 1
            if headers is good and code == "200":
                report.good_ids.add(rid)
    conn.close()


def run(clients: int, requests: int, workdir: Path, passes: int = 2) -> Report:
    pki = workdir / "pki"
    devpki.make_dev_pki(pki)
    (workdir / "emulator").mkdir()
    emulator = start_emulator(pki, workdir / "emulator", "-q")
    # Every client of this test shares 127.0.0.1: the lock-out's budgets per address would turn
    # the good logins into 429s once the bad ones pile up, so they are out of reach here.
    unlimited = {"per_address": 10**9, "per_user_and_address": 10**9, "per_user": 10**9}
    proxy = start_proxy_for(
        pki, workdir / "proxy", emulator.port, "--set", "flow_detail=0",
        authn={"lockout": unlimited},
    )  # fmt: skip
    report = Report(clients, requests * passes)
    try:
        report.rss_before_kib = rss_kib(proxy.process.proc.pid)
        lock = threading.Lock()
        per_client = requests // clients
        start = time.monotonic()
        for p in range(passes):
            threads = [
                threading.Thread(
                    target=client,
                    args=(
                        proxy.port,
                        pki / "proxy-ca.crt",
                        i,
                        per_client,
                        clients,
                        p,
                        report,
                        lock,
                    ),
                )
                for i in range(clients)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            time.sleep(1)  # let the proxy drop finished connections before measuring
            report.rss_after_kib.append(rss_kib(proxy.process.proc.pid))
        report.seconds = time.monotonic() - start - passes
    finally:
        proxy.process.stop()
        emulator.process.stop()
    for record in emulator.requests():
        rid = next((v for n, v in record["headers"] if n.lower() == "x-request-id"), None)
        if rid is None:
            continue
        report.upstream_ids[rid] += 1
        user = record["authentication"]["user"]
        if user is None or user["username"] != "alice":
            report.bad_ids_upstream += 1
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=20000, help="per pass")
    parser.add_argument("--passes", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kfp-load-") as tmp:
        report = run(args.clients, args.requests, Path(tmp), args.passes)
    summary = {
        "clients": report.clients,
        "requests": sum(report.statuses.values()),
        "seconds": round(report.seconds, 1),
        "requests_per_second": round(sum(report.statuses.values()) / report.seconds, 1),
        "statuses": dict(report.statuses),
        "lost": report.lost,
        "duplicated": report.duplicated,
        "server_errors": report.server_errors,
        "refused_logins_that_reached_the_api_server": report.bad_ids_upstream,
        "proxy_rss_kib_before": report.rss_before_kib,
        "proxy_rss_kib_after_each_pass": report.rss_after_kib,
    }
    print(json.dumps(summary, indent=2))
    ok = not (report.lost or report.duplicated or report.server_errors or report.bad_ids_upstream)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
