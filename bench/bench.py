#!/usr/bin/env python3
"""Side-by-side throughput and latency of kube-front-proxy, bare mitmproxy and the nginx recipe.

    bench/run.sh [--rounds 3] [--seconds 5] [--connections 16] [--redis]

With --redis, a second kube-front-proxy process shares its lock-out counters through a local
redis-server (state.redis) and runs as two more candidates: the ratio must not move, as a
remembered login costs no Redis round trip.

Every candidate sits in front of the same fast upstream: nginx with `ssl_verify_client on`
(the front-proxy CA) returning a fixed ~1.4 KB JSON body, so the upstream is not the
bottleneck. wrk drives HTTP/1.1 keep-alive load. Candidates run in turn, round after round
in rotating order, so machine drift hits all alike; the table reports medians over rounds.
"""

from __future__ import annotations

import argparse
import base64
import json
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


LATENCY_PAIR = ["bare mitmproxy, no auth", "kube-front-proxy, bcrypt-12"]


def median(results: list[Result]) -> Result:
    return Result(
        statistics.median(r.rps for r in results),
        statistics.median(r.p50_ms for r in results),
        statistics.median(r.p99_ms for r in results),
    )


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(port: int, seconds: int, connections: int, auth: str | None) -> Result:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "30s"]
    if auth:
        args += ["-H", f"Authorization: {auth}"]
    out = subprocess.run([*args, f"https://127.0.0.1:{port}/api/v1/namespaces/default/pods"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
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
    return Result(rps, latency("50"), latency("99"))


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

    names = ["upstream", "direct", "recipe", "bare", "proxy"] + (["shared", "redis"] * args.redis)
    ports = {name: free_port() for name in names}
    upstream_conf, recipe_conf = nginx_confs(
        work, pki, ports["upstream"], ports["direct"], ports["recipe"]
    )
    config = {
        "listen": {"host": "127.0.0.1", "port": ports["proxy"]},
        "serving": {"cert": str(pki / "proxy-server.crt"), "key": str(pki / "proxy-server.key")},
        "upstream": {"servers": [f"https://127.0.0.1:{ports['upstream']}"],
                     "ca": str(pki / "ca.crt"), "server_name": "kubernetes",
                     "client_cert": str(pki / "front-proxy-client.crt"),
                     "client_key": str(pki / "front-proxy-client.key")},
        "authn": {"htpasswd": str(htpasswd)},
    }  # fmt: skip
    (work / "config.yaml").write_text(json.dumps(config))
    if args.redis:
        config["listen"]["port"] = ports["shared"]  # type: ignore[index]
        config["state"] = {"redis": {"url": f"redis://127.0.0.1:{ports['redis']}/0"}}
        (work / "config-redis.yaml").write_text(json.dumps(config))
    mitm_common = ["--set", "termlog_verbosity=warn", "--set", "flow_detail=0"]
    bare = [str(BIN / "mitmdump"),
            "--mode", f"reverse:https://127.0.0.1:{ports['upstream']}@127.0.0.1:{ports['bare']}",
            "--set", f"certs=*={combined(pki, 'proxy-server')}",
            "--set", f"client_certs={combined(pki, 'front-proxy-client')}",
            "--set", f"ssl_verify_upstream_trusted_ca={pki / 'ca.crt'}", *mitm_common]  # fmt: skip
    ours = [str(BIN / "mitmdump"), "-s", str(REPO / "addon/k8s_auth.py"),
            "--set", f"k8s_auth_config={work / 'config.yaml'}", *mitm_common]  # fmt: skip

    candidates: dict[str, tuple[int, str | None]] = {
        "upstream direct (ceiling)": (ports["direct"], None),
        "bare mitmproxy, no auth": (ports["bare"], None),
        "kube-front-proxy, bcrypt-12": (ports["proxy"], basic("bcrypt-user")),
        "kube-front-proxy, apr1": (ports["proxy"], basic("apr1-user")),
        "nginx recipe, bcrypt-12": (ports["recipe"], basic("bcrypt-user")),
        "nginx recipe, apr1": (ports["recipe"], basic("apr1-user")),
    }
    if args.redis:
        candidates["kube-front-proxy + Redis, bcrypt-12"] = (ports["shared"], basic("bcrypt-user"))
        candidates["kube-front-proxy + Redis, apr1"] = (ports["shared"], basic("apr1-user"))
    results: dict[str, list[Result]] = {name: [] for name in candidates}
    with ExitStack() as running:
        running.enter_context(process(nginx(upstream_conf, work), work / "upstream.out"))
        running.enter_context(process(nginx(recipe_conf, work), work / "recipe.out"))
        running.enter_context(process(bare, work / "bare.out"))
        running.enter_context(process(ours, work / "proxy.out"))
        if args.redis:
            redis = ["redis-server", "--bind", "127.0.0.1", "--port", str(ports["redis"]),
                     "--save", "", "--appendonly", "no", "--dir", str(work)]  # fmt: skip
            running.enter_context(process(redis, work / "redis.out"))
            shared = [str(BIN / "mitmdump"), "-s", str(REPO / "addon/k8s_auth.py"),
                      "--set", f"k8s_auth_config={work / 'config-redis.yaml'}",
                      *mitm_common]  # fmt: skip
            running.enter_context(process(shared, work / "proxy-redis.out"))
        for port in ports.values():
            wait_port(port)
        cold = [first_request_ms(ports["proxy"], u, "pw", pki / "proxy-ca.crt") for u in cold_users]
        # Warm-up: fills the credential cache and the connection pools.
        for port, auth in candidates.values():
            wrk(port, 1, args.connections, auth)
            if port == ports["recipe"]:
                drain(port, pki / "proxy-ca.crt")
        names = list(candidates)
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                port, auth = candidates[name]
                results[name].append(wrk(port, args.seconds, args.connections, auth))
                if port == ports["recipe"]:
                    drain(port, pki / "proxy-ca.crt")
                print(f"round {r + 1}: {name}: {results[name][-1].rps:.1f} req/s", file=sys.stderr)
        # Latency without queueing: one connection, one request at a time.
        single: dict[str, list[Result]] = {name: [] for name in LATENCY_PAIR}
        for r in range(args.rounds):
            for name in LATENCY_PAIR[r % 2 :] + LATENCY_PAIR[: r % 2]:
                port, auth = candidates[name]
                single[name].append(wrk(port, args.seconds, 1, auth))

    med = {name: median(rs) for name, rs in results.items()}
    bare_m, nginx_b = med["bare mitmproxy, no auth"], med["nginx recipe, bcrypt-12"]
    print(f"\n{args.rounds} rounds x {args.seconds} s, wrk -t1 -c{args.connections}, "
          f"HTTP/1.1 keep-alive, {len(BODY)} B JSON body; medians over rounds\n")  # fmt: skip
    print("| candidate | req/s | p50 ms | p99 ms | vs bare mitmproxy | vs nginx bcrypt-12 |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, m in med.items():
        # nginx with bcrypt can serve nothing at all in a round on a loaded machine.
        vs_nginx = f"{m.rps / nginx_b.rps:,.0f}x" if nginx_b.rps else "-"
        print(f"| {name} | {m.rps:,.1f} | {m.p50_ms:.2f} | {m.p99_ms:.2f} | "
              f"{m.rps / bare_m.rps:.2f}x | {vs_nginx} |")  # fmt: skip
    one = {name: median(rs) for name, rs in single.items()}
    bare_1, ours_1 = (one[name] for name in LATENCY_PAIR)
    print(f"\none connection (no queueing), medians over rounds: bare mitmproxy p50 "
          f"{bare_1.p50_ms:.2f} ms, kube-front-proxy (bcrypt-12, warm) p50 {ours_1.p50_ms:.2f} ms: "
          f"{ours_1.p50_ms - bare_1.p50_ms:+.2f} ms added")  # fmt: skip
    print(f"cold cache, first request of a new bcrypt-12 user: median "
          f"{statistics.median(cold):.0f} ms (min {min(cold):.0f}, max {max(cold):.0f}, "
          f"n={len(cold)})")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({n: [r.__dict__ for r in rs] for n, rs in results.items()}))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
