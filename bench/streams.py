#!/usr/bin/env python3
"""Streaming through the proxy: watch-event latency, and memory while relaying 200 MB.

    .venv/bin/python bench/streams.py [--events 200] [--megabytes 200]

A small mTLS upstream (it wants the front-proxy client certificate, like the API server)
sends watch events every 20 ms, each stamped with its send time, and large bodies, chunked or
with a Content-Length. The client reads them directly and through the proxy; the event latency
is receive time minus send time (one machine, one clock). The proxy's RSS is sampled while the
large bodies pass.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import ssl
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "addon"))
sys.path.insert(0, str(REPO / "certs"))

import devpki  # noqa: E402
from tests.support.harness import start_proxy_for  # noqa: E402
from tests.support.users import basic_header, password_of  # noqa: E402

CHUNK = 64 * 1024


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b" ", 2)[1].decode()
            url = urlsplit(target)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == "/watch":
                await _watch(writer, int(query["events"]), float(query["interval"]))
            else:
                await _big(writer, int(query["bytes"]), query.get("length") == "1")
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _watch(writer: asyncio.StreamWriter, events: int, interval: float) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
    for i in range(events):
        await asyncio.sleep(interval)
        line = json.dumps({"type": "MODIFIED", "object": {"n": i, "sent": time.time()}}) + "\n"
        data = line.encode()
        writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()


async def _big(writer: asyncio.StreamWriter, size: int, with_length: bool) -> None:
    framing = f"Content-Length: {size}" if with_length else "Transfer-Encoding: chunked"
    writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{framing}\r\n\r\n".encode())
    block = b"x" * CHUNK
    sent = 0
    while sent < size:
        data = block[: min(CHUNK, size - sent)]
        writer.write(data if with_length else b"%x\r\n%s\r\n" % (len(data), data))
        sent += len(data)
        await writer.drain()
    if not with_length:
        writer.write(b"0\r\n\r\n")
    await writer.drain()


def start_upstream(pki: Path) -> int:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki / "apiserver.crt", pki / "apiserver.key")
    context.load_verify_locations(pki / "front-proxy-ca.crt")
    context.verify_mode = ssl.CERT_REQUIRED
    ready = threading.Event()
    port = []

    async def main() -> None:
        server = await asyncio.start_server(_serve, "127.0.0.1", 0, ssl=context)
        port.append(server.sockets[0].getsockname()[1])
        ready.set()
        await server.serve_forever()

    threading.Thread(target=lambda: asyncio.run(main()), daemon=True).start()
    ready.wait(10)
    return port[0]


def connect(port: int, pki: Path, via_proxy: bool) -> http.client.HTTPSConnection:
    if via_proxy:
        context = ssl.create_default_context(cafile=str(pki / "proxy-ca.crt"))
    else:
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        context.load_cert_chain(pki / "front-proxy-client.crt", pki / "front-proxy-client.key")
        context.check_hostname = False
    return http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=120)


def watch_latencies_ms(port: int, pki: Path, via_proxy: bool, events: int) -> list[float]:
    conn = connect(port, pki, via_proxy)
    conn.request("GET", f"/watch?events={events}&interval=0.02",
                  headers=dict([basic_header("alice", password_of("alice"))]))  # fmt: skip
    response = conn.getresponse()
    latencies = []
    while line := response.readline():
        latencies.append((time.time() - json.loads(line)["object"]["sent"]) * 1000)
    conn.close()
    return latencies


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def big_body_peak_mib(port: int, pki: Path, pid: int, size: int, with_length: bool) -> float:
    """Peak proxy RSS growth while `size` bytes pass through, read slowly by the client."""
    before = rss_mib(pid)
    peak = before
    conn = connect(port, pki, True)
    conn.request("GET", f"/big?bytes={size}&length={int(with_length)}",
                 headers=dict([basic_header("alice", password_of("alice"))]))  # fmt: skip
    response = conn.getresponse()
    received = 0
    while chunk := response.read(CHUNK):
        received += len(chunk)
        if received % (4 * 1024 * 1024) < CHUNK:
            peak = max(peak, rss_mib(pid))
    conn.close()
    if received != size:
        raise RuntimeError(f"received {received} of {size} bytes")
    return peak - before


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--megabytes", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kfp-streams-") as tmp:
        work = Path(tmp)
        pki = work / "pki"
        devpki.make_dev_pki(pki)
        upstream = start_upstream(pki)
        # The small upstream publishes no trust ConfigMap (the proxy would not serve).
        proxy = start_proxy_for(pki, work / "proxy", upstream, "--set", "flow_detail=0",
                                upstream={"check_cluster_trust": False})  # fmt: skip
        try:
            direct = watch_latencies_ms(upstream, pki, False, args.events)
            proxied = watch_latencies_ms(proxy.port, pki, True, args.events)
            size = args.megabytes * 1024 * 1024
            pid = proxy.process.proc.pid
            chunked = big_body_peak_mib(proxy.port, pki, pid, size, with_length=False)
            with_length = big_body_peak_mib(proxy.port, pki, pid, size, with_length=True)
        finally:
            proxy.process.stop()

    def q(values: list[float], pct: int) -> float:
        return statistics.quantiles(values, n=100)[pct - 1]

    print(f"watch events ({args.events}, every 20 ms), latency from upstream send to client:")
    for name, values in (("direct", direct), ("through kube-front-proxy", proxied)):
        print(f"  {name}: p50 {q(values, 50):.2f} ms, p99 {q(values, 99):.2f} ms, "
              f"max {max(values):.2f} ms")  # fmt: skip
    print(f"proxy RSS growth while relaying {args.megabytes} MB: chunked {chunked:.1f} MiB, "
          f"with Content-Length {with_length:.1f} MiB")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
