#!/usr/bin/env python3
"""Throughput of 1 and of 2 kube-front-proxy processes sharing one port (listen.reuse_port).

    bench/run.sh --scaleout [--rounds 5] [--seconds 8] [--connections 16] [--redis]

The same fast upstream and the same wrk load as bench/bench.py (whose pieces this reuses).
Both setups run side by side, idle while the other is measured: one process on one port, two
processes with one config on another port. They take turns, round after round, alternating
which goes first; the table gives medians over rounds and the ratio of the two. With --redis,
every process shares its lock-out counters through one local redis-server (state.redis).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from bench import (
    BIN,
    REPO,
    USERS,
    Result,
    basic,
    devpki,
    free_port,
    median,
    nginx,
    nginx_confs,
    process,
    wait_port,
    wrk,
)

CANDIDATES = {"1 process": 1, "2 processes": 2}


def proxy_config(
    work: Path, pki: Path, port: int, upstream_port: int, redis_port: int | None
) -> Path:
    path = work / f"config-{port}.yaml"
    state = {"redis": {"url": f"redis://127.0.0.1:{redis_port}/0"}} if redis_port else {}
    path.write_text(json.dumps({
        "listen": {"host": "127.0.0.1", "port": port, "reuse_port": True},
        "serving": {"cert": str(pki / "proxy-server.crt"), "key": str(pki / "proxy-server.key")},
        "upstream": {"servers": [f"https://127.0.0.1:{upstream_port}"],
                     "ca": str(pki / "ca.crt"), "server_name": "kubernetes",
                     "client_cert": str(pki / "front-proxy-client.crt"),
                     "client_key": str(pki / "front-proxy-client.key"),
                     # nginx stands in for the API server: it publishes no trust ConfigMap.
                     "check_cluster_trust": False},
        "authn": {"htpasswd": str(work / "htpasswd")},
        "state": state,
    }))  # fmt: skip
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--redis", action="store_true", help="share counters through Redis")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="kfp-scaleout-"))
    pki = work / "pki"
    devpki.make_dev_pki(pki)
    user, flags = USERS["bcrypt"]
    subprocess.run(["htpasswd", "-b", "-c", *flags, str(work / "htpasswd"), user,
                    f"{user}-password"], check=True, capture_output=True)  # fmt: skip
    upstream_port = free_port()
    upstream_conf, _ = nginx_confs(work, pki, upstream_port, free_port(), free_port())
    ports = {name: free_port() for name in CANDIDATES}
    auth = basic(user)
    results: dict[str, list[Result]] = {name: [] for name in CANDIDATES}
    with ExitStack() as stack:
        stack.enter_context(process(nginx(upstream_conf, work), work / "upstream.out"))
        redis_port = free_port() if args.redis else None
        if redis_port:
            redis = ["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port),
                     "--save", "", "--appendonly", "no", "--dir", str(work)]  # fmt: skip
            stack.enter_context(process(redis, work / "redis.out"))
            wait_port(redis_port)
        for name, count in CANDIDATES.items():
            config = proxy_config(work, pki, ports[name], upstream_port, redis_port)
            for i in range(count):
                stack.enter_context(process(
                    [str(BIN / "mitmdump"), "-s", str(REPO / "addon/k8s_auth.py"),
                     "--set", f"k8s_auth_config={config}",
                     "--set", "termlog_verbosity=warn", "--set", "flow_detail=0"],
                    work / f"proxy-{ports[name]}-{i}.out",
                ))  # fmt: skip
        wait_port(upstream_port)
        for name in CANDIDATES:
            wait_port(ports[name])
            # Warm-up: every process checks the password once (the cache is per process).
            wrk(ports[name], 2, args.connections, auth)
        names = list(CANDIDATES)
        for r in range(args.rounds):
            for name in names[r % 2 :] + names[: r % 2]:
                results[name].append(wrk(ports[name], args.seconds, args.connections, auth))
                print(f"round {r + 1}: {name}: {results[name][-1].rps:.1f} req/s", file=sys.stderr)

    med = {name: median(rs) for name, rs in results.items()}
    one = med["1 process"]
    shared = ", counters in Redis" if args.redis else ""
    print(f"\n{args.rounds} rounds x {args.seconds} s, wrk -t1 -c{args.connections}, "
          f"HTTP/1.1 keep-alive, {user}{shared}; medians over rounds\n")  # fmt: skip
    print("| candidate | req/s | p50 ms | p99 ms | vs 1 process | req/s, each round |")
    print("|---|---:|---:|---:|---:|---|")
    for name, m in med.items():
        rounds = ", ".join(f"{r.rps:.0f}" for r in results[name])
        print(f"| {name} | {m.rps:,.1f} | {m.p50_ms:.2f} | {m.p99_ms:.2f} | "
              f"{m.rps / one.rps:.2f}x | {rounds} |")  # fmt: skip
    ratios = [b.rps / a.rps for a, b in zip(*results.values(), strict=True)]
    print(
        f"\nratio 2/1 per round: {', '.join(f'{x:.2f}' for x in ratios)} "
        f"(median {statistics.median(ratios):.2f})"
    )
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
