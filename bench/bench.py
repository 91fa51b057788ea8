#!/usr/bin/env python3
"""Side-by-side throughput and latency of kube-front-proxy, bare mitmproxy and the nginx recipe.

    bench/run.sh [--rounds 3] [--seconds 5] [--connections 16] [--redis] [--compare DIR]
                 [--only NAME]

With --redis, a second kube-front-proxy process shares its lock-out counters through a local
redis-server (state.redis) and runs as two more candidates: the ratio must not move, as a
remembered login costs no Redis round trip.

Every candidate sits in front of the same fast upstream: nginx with `ssl_verify_client on`
(the front-proxy CA) returning a fixed ~1.4 KB JSON body, so the upstream is not the
bottleneck. wrk drives HTTP/1.1 keep-alive load. Candidates run in turn, round after round
in rotating order, so machine drift hits all alike; the table reports medians over rounds.
Besides wrk's figures, the CPU time each candidate's processes spent per request: other work
on a shared machine slows a candidate down, but hardly changes what a request costs it.

--compare DIR (repeatable) adds the kube-front-proxy of another checkout (`git worktree add DIR
REV`) as a candidate with the same config: an A/B of revisions in one run. --only NAME
(repeatable) keeps the candidates whose name contains NAME; bare mitmproxy always runs.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "certs"))
import devpki  # noqa: E402

BIN = Path(sys.executable).parent
BODY = json.dumps(
    {
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": "12345"},
        "items": [
            {
                "metadata": {"name": f"nginx-{i}", "namespace": "default", "uid": f"uid-{i:032d}"},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]},
                "status": {"phase": "Running", "podIP": f"10.0.0.{i}"},
            }
            for i in range(7)
        ],
    }
)
USERS = {"bcrypt": ("bcrypt-user", ["-B", "-C", "12"]), "apr1": ("apr1-user", ["-m"])}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


@contextmanager
def process(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                start_new_session=True)  # fmt: skip
        try:
            yield proc
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def combined(directory: Path, name: str) -> Path:
    path = directory / f"{name}.pem"
    path.write_bytes(
        (directory / f"{name}.crt").read_bytes() + (directory / f"{name}.key").read_bytes()
    )
    return path


def nginx_confs(
    work: Path, pki: Path, upstream_port: int, direct_port: int, recipe_port: int
) -> tuple[Path, Path]:
    """Two nginx instances, one worker each: the upstream, and the classic recipe.

    Separate processes, because nginx runs crypt() on its event loop: a bcrypt backlog in the
    recipe must not stall the upstream that the other candidates use.
    """
    common = "worker_processes 1;\nevents { worker_connections 1024; }\n"
    upstream = work / "upstream.conf"
    upstream.write_text(f"""{common}
pid {work}/upstream.pid;
error_log {work}/upstream-error.log warn;
http {{
  access_log off;
  default_type application/json;
  # The fast upstream: an "API server" that wants the front-proxy client certificate.
  server {{
    listen 127.0.0.1:{upstream_port} ssl;
    ssl_certificate {pki}/apiserver.crt;
    ssl_certificate_key {pki}/apiserver.key;
    ssl_client_certificate {pki}/front-proxy-ca.crt;
    ssl_verify_client on;
    keepalive_requests 1000000;
    location / {{ return 200 '{BODY}'; }}
  }}
  # The same body without client certificates, for the direct (ceiling) measurement.
  server {{
    listen 127.0.0.1:{direct_port} ssl;
    ssl_certificate {pki}/apiserver.crt;
    ssl_certificate_key {pki}/apiserver.key;
    keepalive_requests 1000000;
    location / {{ return 200 '{BODY}'; }}
  }}
}}
""")
    recipe = work / "recipe.conf"
    recipe.write_text(f"""{common}
pid {work}/recipe.pid;
error_log {work}/recipe-error.log warn;
http {{
  access_log off;
  # The classic recipe: auth_basic + proxy_ssl_certificate.
  upstream apiserver {{ server 127.0.0.1:{upstream_port}; keepalive 32; }}
  server {{
    listen 127.0.0.1:{recipe_port} ssl;
    ssl_certificate {pki}/proxy-server.crt;
    ssl_certificate_key {pki}/proxy-server.key;
    keepalive_requests 1000000;
    auth_basic "kubernetes";
    auth_basic_user_file {work}/htpasswd;
    location / {{
      proxy_pass https://apiserver;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_ssl_certificate {pki}/front-proxy-client.crt;
      proxy_ssl_certificate_key {pki}/front-proxy-client.key;
      proxy_ssl_trusted_certificate {pki}/ca.crt;
      proxy_ssl_verify on;
      proxy_ssl_name kubernetes;
      proxy_ssl_session_reuse on;
      proxy_set_header X-Remote-User $remote_user;
      proxy_set_header X-Remote-Group system:masters;
    }}
  }}
}}
""")
    return upstream, recipe


def nginx(conf: Path, prefix: Path) -> list[str]:
    return ["nginx", "-c", str(conf), "-p", str(prefix), "-g", "daemon off;"]


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float = math.nan
    """CPU time of the candidate's processes per request, in microseconds."""


BARE = "bare mitmproxy, no auth"
LATENCY_PAIR = [BARE, "kube-front-proxy, bcrypt-12"]


def median(results: list[Result]) -> Result:
    return Result(
        statistics.median(r.rps for r in results),
        statistics.median(r.p50_ms for r in results),
        statistics.median(r.p99_ms for r in results),
        statistics.median(r.cpu_us for r in results),
    )


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(group: int) -> float:
    """User and system CPU time of the processes (all their threads) in a process group."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # After the command's closing parenthesis: state, ppid, pgrp, ... utime, stime.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[2]) == group:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / _CLOCK_TICKS


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(
    port: int, seconds: int, connections: int, auth: str | None, group: int | None = None
) -> Result:
    """One wrk run; with `group`, also the CPU time of that process group per request."""
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "30s"]
    if auth:
        args += ["-H", f"Authorization: {auth}"]
    cpu_before = cpu_seconds(group) if group else 0.0
    out = subprocess.run([*args, f"https://127.0.0.1:{port}/api/v1/namespaces/default/pods"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    cpu = cpu_seconds(group) - cpu_before if group else math.nan
    if os.environ.get("BENCH_DEBUG"):
        print(out, file=sys.stderr)
    if re.search(r"Non-2xx or 3xx responses", out):
        raise RuntimeError(f"errors during the run on port {port}:\n{out}")

    def latency(pct: str) -> float:
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            raise RuntimeError(f"no {pct}% latency in wrk output:\n{out}")
        return float(m.group(1)) * _UNITS[m.group(2)]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return Result(rps, latency("50"), latency("99"), cpu * 1e6 / max(requests, 1))


def drain(port: int, ca: Path) -> None:
    """Wait until a server has worked off requests that wrk left behind (bcrypt backlog)."""
    first_request_ms(port, "apr1-user", "apr1-user-password", ca, timeout=120)


def basic(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{user}-password".encode()).decode()


def first_request_ms(port: int, user: str, password: str, ca: Path, timeout: float = 30) -> float:
    """Time of one request with credentials the proxy has not seen yet (cold cache)."""
    import http.client
    import ssl

    context = ssl.create_default_context(cafile=str(ca))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=timeout)
    conn.connect()
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    start = time.perf_counter()
    conn.request(
        "GET", "/api/v1/namespaces/default/pods", headers={"Authorization": f"Basic {token}"}
    )
    response = conn.getresponse()
    response.read()
    elapsed = (time.perf_counter() - start) * 1000
    conn.close()
    if response.status != 200:
        raise RuntimeError(f"cold request got {response.status}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--redis", action="store_true", help="also run a proxy with state.redis")
    parser.add_argument("--compare", type=Path, action="append", metavar="DIR",
                        help="also run the kube-front-proxy of this checkout")  # fmt: skip
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="run only the candidates whose name contains NAME")  # fmt: skip
    args = parser.parse_args()
    for tool in ("nginx", "wrk", "htpasswd") + (("redis-server",) if args.redis else ()):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            print(f"bench: {tool} is missing (bench/run.sh installs it)", file=sys.stderr)
            return 1

    work = Path(tempfile.mkdtemp(prefix="kfp-bench-"))
    work.chmod(0o755)  # nginx workers (www-data) read the htpasswd file at request time
    pki = work / "pki"
    devpki.make_dev_pki(pki)
    htpasswd = work / "htpasswd"
    for user, flags in USERS.values():
        create = [] if htpasswd.exists() else ["-c"]
        subprocess.run(["htpasswd", "-b", *create, *flags, str(htpasswd), user, f"{user}-password"],
                       check=True, capture_output=True)  # fmt: skip
    htpasswd.chmod(0o644)
    cold_users = [f"cold-{i}" for i in range(5)]
    for user in cold_users:
        subprocess.run(["htpasswd", "-b", "-B", "-C", "12", str(htpasswd), user, "pw"],
                       check=True, capture_output=True)  # fmt: skip

    names = ["upstream", "direct", "recipe", "bare", "proxy"] + (["redis", "shared"] * args.redis)
    ports = {name: free_port() for name in names}
    upstream_conf, recipe_conf = nginx_confs(
        work, pki, ports["upstream"], ports["direct"], ports["recipe"]
    )

    def config(port: int, redis: int | None = None) -> Path:
        path = work / f"config-{port}.yaml"
        state = {"state": {"redis": {"url": f"redis://127.0.0.1:{redis}/0"}}} if redis else {}
        path.write_text(json.dumps({
            "listen": {"host": "127.0.0.1", "port": port},
            "serving": {"cert": str(pki / "proxy-server.crt"),
                        "key": str(pki / "proxy-server.key")},
            "upstream": {"servers": [f"https://127.0.0.1:{ports['upstream']}"],
                         "ca": str(pki / "ca.crt"), "server_name": "kubernetes",
                         "client_cert": str(pki / "front-proxy-client.crt"),
                         "client_key": str(pki / "front-proxy-client.key"),
                         # nginx stands in for the API server: it publishes no trust ConfigMap.
                         "check_cluster_trust": False},
            "authn": {"htpasswd": str(htpasswd)},
            **state,
        }))  # fmt: skip
        return path

    mitm_common = ["--set", "termlog_verbosity=warn", "--set", "flow_detail=0"]
    bare = [str(BIN / "mitmdump"),
            "--mode", f"reverse:https://127.0.0.1:{ports['upstream']}@127.0.0.1:{ports['bare']}",
            "--set", f"certs=*={combined(pki, 'proxy-server')}",
            "--set", f"client_certs={combined(pki, 'front-proxy-client')}",
            "--set", f"ssl_verify_upstream_trusted_ca={pki / 'ca.crt'}", *mitm_common]  # fmt: skip

    def ours(checkout: Path, port: int, redis: int | None = None) -> list[str]:
        # mitmproxy opens its default listener (port 8080) before the addon replaces it: any
        # free port instead, or a mitmdump starting elsewhere on the machine makes it fail.
        return [str(BIN / "mitmdump"), "--mode", "regular@0",
                "-s", str(checkout / "addon/k8s_auth.py"),
                "--set", f"k8s_auth_config={config(port, redis)}", *mitm_common]  # fmt: skip

    # name -> (port, Authorization, the process serving it)
    candidates: dict[str, tuple[int, str | None, str]] = {
        "upstream direct (ceiling)": (ports["direct"], None, "upstream"),
        BARE: (ports["bare"], None, "bare"),
        "kube-front-proxy, bcrypt-12": (ports["proxy"], basic("bcrypt-user"), "proxy"),
        "kube-front-proxy, apr1": (ports["proxy"], basic("apr1-user"), "proxy"),
        "nginx recipe, bcrypt-12": (ports["recipe"], basic("bcrypt-user"), "recipe"),
        "nginx recipe, apr1": (ports["recipe"], basic("apr1-user"), "recipe"),
    }
    commands = {
        "upstream": nginx(upstream_conf, work),
        "recipe": nginx(recipe_conf, work),
        "bare": bare,
        "proxy": ours(REPO, ports["proxy"]),
    }
    if args.redis:
        commands["redis"] = ["redis-server", "--bind", "127.0.0.1", "--port", str(ports["redis"]),
                             "--save", "", "--appendonly", "no", "--dir", str(work)]  # fmt: skip
        commands["shared"] = ours(REPO, ports["shared"], ports["redis"])
        candidates["kube-front-proxy + Redis, bcrypt-12"] = (
            ports["shared"],
            basic("bcrypt-user"),
            "shared",
        )
        candidates["kube-front-proxy + Redis, apr1"] = (
            ports["shared"],
            basic("apr1-user"),
            "shared",
        )
    for i, checkout in enumerate(args.compare or []):
        key = f"compare-{i}"
        ports[key] = free_port()
        git = ["git", "-C", str(checkout), "log", "-1", "--format=%h"]
        revision = subprocess.run(git, capture_output=True, text=True, check=True).stdout.strip()
        candidates[f"kube-front-proxy at {revision}, bcrypt-12"] = (
            ports[key],
            basic("bcrypt-user"),
            key,
        )
        commands[key] = ours(checkout.resolve(), ports[key])
    if args.only:
        candidates = {
            name: c
            for name, c in candidates.items()
            if name == BARE or any(o in name for o in args.only)
        }
    results: dict[str, list[Result]] = {name: [] for name in candidates}
    single: dict[str, list[Result]] = {name: [] for name in LATENCY_PAIR if name in candidates}
    with ExitStack() as stack:
        groups = {}
        for key, command in commands.items():
            groups[key] = stack.enter_context(process(command, work / f"{key}.out")).pid
            wait_port(ports[key])
        cold = [first_request_ms(ports["proxy"], u, "pw", pki / "proxy-ca.crt") for u in cold_users]
        # Warm-up: fills the credential cache and the connection pools.
        for port, auth, _ in candidates.values():
            wrk(port, 1, args.connections, auth)
            if port == ports["recipe"]:
                drain(port, pki / "proxy-ca.crt")
        names = list(candidates)
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                port, auth, key = candidates[name]
                results[name].append(wrk(port, args.seconds, args.connections, auth, groups[key]))
                if port == ports["recipe"]:
                    drain(port, pki / "proxy-ca.crt")
                print(f"round {r + 1}: {name}: {results[name][-1].rps:.1f} req/s, "
                      f"{results[name][-1].cpu_us:.0f} us CPU/req", file=sys.stderr)  # fmt: skip
        # Latency without queueing: one connection, one request at a time.
        pair = list(single)
        for r in range(args.rounds if len(pair) == 2 else 0):
            for name in pair[r % 2 :] + pair[: r % 2]:
                port, auth, key = candidates[name]
                single[name].append(wrk(port, args.seconds, 1, auth, groups[key]))

    report(args, results, single, cold)
    if args.json:
        args.json.write_text(json.dumps({n: [r.__dict__ for r in rs] for n, rs in results.items()}))
    shutil.rmtree(work, ignore_errors=True)
    return 0


def report(
    args: argparse.Namespace,
    results: dict[str, list[Result]],
    single: dict[str, list[Result]],
    cold: list[float],
) -> None:
    med = {name: median(rs) for name, rs in results.items()}
    bare_m = med[BARE]
    nginx_b = med.get("nginx recipe, bcrypt-12")
    print(f"\n{args.rounds} rounds x {args.seconds} s, wrk -t1 -c{args.connections}, "
          f"HTTP/1.1 keep-alive, {len(BODY)} B JSON body; medians over rounds\n")  # fmt: skip
    print("| candidate | req/s | p50 ms | p99 ms | CPU us/req | vs bare mitmproxy: req/s, "
          "per round, CPU | vs nginx bcrypt-12 |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, m in med.items():
        rounds = statistics.median(
            r.rps / b.rps for r, b in zip(results[name], results[BARE], strict=True)
        )
        vs_nginx = f"{m.rps / nginx_b.rps:,.0f}x" if nginx_b and nginx_b.rps else "-"
        print(f"| {name} | {m.rps:,.1f} | {m.p50_ms:.2f} | {m.p99_ms:.2f} | {m.cpu_us:,.0f} | "
              f"{m.rps / bare_m.rps:.2f}x, {rounds:.2f}x, {bare_m.cpu_us / m.cpu_us:.2f}x | "
              f"{vs_nginx} |")  # fmt: skip
    if all(single.values()) and len(single) == 2:
        bare_1, ours_1 = (median(single[name]) for name in LATENCY_PAIR)
        print(f"\none connection (no queueing), medians over rounds: bare mitmproxy p50 "
              f"{bare_1.p50_ms:.2f} ms, kube-front-proxy (bcrypt-12, warm) p50 "
              f"{ours_1.p50_ms:.2f} ms: {ours_1.p50_ms - bare_1.p50_ms:+.2f} ms added; CPU "
              f"{bare_1.cpu_us:,.0f} and {ours_1.cpu_us:,.0f} us/req")  # fmt: skip
    print(f"cold cache, first request of a new bcrypt-12 user: median "
          f"{statistics.median(cold):.0f} ms (min {min(cold):.0f}, max {max(cold):.0f}, "
          f"n={len(cold)})")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
