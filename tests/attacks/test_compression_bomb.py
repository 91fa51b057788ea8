"""A gzip bomb through pods/proxy cannot make the proxy decode it.

The proxy keeps the API servers' addresses out of discovery and Status bodies
(upstream/hiding.py). It used to decode every buffered JSON response to look for them, gzip
included, on its only event loop. A user who can write to a pod's web root (kubectl cp) and
read it back through `pods/NAME/proxy` (the API server passes the pod's encoded body through)
served a 0.2 MB gzip body that decodes to 200 MiB: fetched three times, it peaked the proxy's
RSS 402 MiB higher, and another user's request waited 1.43 s.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from tests.support.harness import Proxy
from tests.support.http1 import raw_request
from tests.support.measure import PeakRss, bystander
from tests.support.upgrades import REMOTE_COMMAND_ENV, kubectl
from tests.support.users import basic_header, password_of

MiB = 1 << 20
BOMB_PATH = "/api/v1/namespaces/default/pods/nginx-1/proxy/bomb.json"


def make_bomb(directory: Path) -> Path:
    """200 MiB of a JSON Status, gzip'ed to about 0.2 MB, as nginx's gzip_static serves it."""
    decoded = b'{"kind":"Status","message":"' + b"A" * (200 * MiB) + b'"}'
    bomb = directory / "bomb.json.gz"
    bomb.write_bytes(gzip.compress(decoded, compresslevel=9))
    return bomb


def test_a_gzip_bomb_through_pods_proxy_is_passed_on_undecoded(
    proxy: Proxy, tmp_path: Path
) -> None:
    bomb = make_bomb(tmp_path)
    planted = kubectl(proxy, "cp", str(bomb), "nginx-1:/usr/share/nginx/html/bomb.json.gz",
                      env=REMOTE_COMMAND_ENV["websocket"])  # fmt: skip
    assert planted.returncode == 0, planted.stderr
    context = proxy.context()
    login = basic_header("alice", password_of("alice"))
    answers = []
    with PeakRss(proxy.process.proc.pid) as rss, bystander(proxy) as other:
        for _ in range(3):
            answers.append(raw_request("127.0.0.1", proxy.port, context, "GET", BOMB_PATH,
                                       [login, ("Accept-Encoding", "gzip")]))  # fmt: skip
    print(f"{bomb.stat().st_size} bytes of gzip: RSS {rss.before:.0f} -> peak {rss.peak:.0f} "
          f"MiB; other user's worst {other.worst * 1000:.0f} ms")  # fmt: skip
    # Was +402 MiB at the peak, and 1.43 s for the other user's request.
    assert rss.growth < 32
    assert other.worst < 1.0 and set(other.statuses) == {200}
    for status, headers, body in answers:
        assert status == 200
        assert ("Content-Encoding", "gzip") in headers
        assert body == bomb.read_bytes()  # byte for byte as the pod served it
