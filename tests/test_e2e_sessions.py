"""Through the proxy: exec, attach and cp sessions recorded for audits, with real kubectl.

With `audit.sessions_dir` set, each exec or attach session, over WebSocket (kubectl's default)
and SPDY (`KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`), TTY or not, leaves one asciicast v2 file
named after its audit ID. Each file is checked with asciinema's own parser and player
(`asciinema cat` prints what the user's terminal showed), against what kubectl printed; the
audit event names the file, the listing (`kube-front-proxy-audit sessions DIR`) shows it and the
saved flow's comment names it. port-forward is counted, not recorded. Then what goes wrong: an
unwritable directory (the session goes on, counted; refused with `audit.sessions_required`), a
disk that fills up mid-session (the proxy run under `prlimit --fsize`, so its writes past the
size fail with EFBIG, as on a full disk), and a 200 MB `kubectl cp` (the proxy's memory stays
flat, the file stops at `audit.sessions_max_mb`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from asciinema import asciicast
from mitmproxy import http, io, tcp
from prometheus_client.parser import text_string_to_metric_families

from tests.support.api_paths import EXEC
from tests.support.configs import proxy_config, write_yaml
from tests.support.harness import Emulator, Proxy, start_proxy_for
from tests.support.measure import PeakRss
from tests.support.processes import BIN, KUBECTL, REPO, Process, free_port
from tests.support.terminal import COLS, ROWS, Terminal
from tests.support.upgrades import (
    PORT_FORWARD_ENV,
    REMOTE_COMMAND_ENV,
    kubectl,
    read_forwarded_ports,
    talk,
    upgrade_records,
)
from tests.support.users import write_users
from tests.support.waiting import wait_until

PROTOCOLS = sorted(REMOTE_COMMAND_ENV)
SUBPROTOCOL = {"websocket": "v5.channel.k8s.io", "spdy": "v4.channel.k8s.io"}
TIMEOUT = 15.0
MiB = 1 << 20


@dataclass
class Recorded:
    """A proxy that records sessions, and where it writes."""

    proxy: Proxy
    sessions: Path
    audit: Path
    metrics_port: int
    flows: Path

    def casts(self) -> set[Path]:
        return set(self.sessions.glob("*.cast")) if self.sessions.is_dir() else set()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.audit.read_text().splitlines()]

    def completed(self, subresource: str) -> list[dict[str, Any]]:
        """ResponseComplete events of exec/attach/portforward requests, in order."""
        return [e for e in self.events() if e["stage"] == "ResponseComplete"
                and e.get("objectRef", {}).get("subresource") == subresource]  # fmt: skip

    def metric(self, name: str, **labels: str) -> float:
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics").read()
        for family in text_string_to_metric_families(text.decode()):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return 0.0


def start_recorded(pki: Path, workdir: Path, upstream: int, **audit: Any) -> Recorded:
    sessions, log, flows = workdir / "sessions", workdir / "audit.log", workdir / "flows.mitm"
    port = free_port()
    proxy = start_proxy_for(
        pki, workdir, upstream, "-w", str(flows),
        audit={"path": str(log), "sessions_dir": str(sessions), **audit},
        metrics={"listen": f"127.0.0.1:{port}"},
    )  # fmt: skip
    return Recorded(proxy, sessions, log, port, flows)


@pytest.fixture(scope="module")
def recorded(
    pki: Path, emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Recorded]:
    r = start_recorded(pki, tmp_path_factory.mktemp("recorded"), emulator.port)
    yield r
    r.proxy.process.stop()


def new_cast(recorded: Recorded, before: set[Path]) -> Path:
    """The one file a session added (it is closed by the time its audit event is complete)."""
    [path] = wait_until(lambda: recorded.casts() - before, TIMEOUT, "a recording")
    return path


def ended(path: Path) -> dict[str, Any]:
    """The header, once the proxy has closed the recording."""
    return dict(wait_until(lambda: _header_if_ended(path), TIMEOUT, f"{path.name} to end"))


def _header_if_ended(path: Path) -> dict[str, Any] | None:
    header = json.loads(path.read_bytes().split(b"\n", 1)[0])
    return header if header["kube_front_proxy"].get("ended") else None


def asciinema_read(path: Path) -> tuple[dict[str, Any], list[list[Any]]]:
    with asciicast.open_from_url(str(path)) as cast:
        return cast.v2_header, list(cast.events())


def asciinema(*args: str) -> bytes:
    """What asciinema prints (no terminal: `cat` and `play` write the output events raw)."""
    result = subprocess.run(
        [str(BIN / "asciinema"), *args],
        capture_output=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def asciinema_cat(path: Path) -> bytes:
    """What `asciinema cat FILE` prints: the session's output as the user's terminal got it."""
    return asciinema("cat", str(path))


def text(events: list[list[Any]], code: str) -> str:
    return "".join(e[2] for e in events if e[1] == code)


def assert_named_by_its_audit_event(recorded: Recorded, path: Path, subresource: str) -> None:
    [event] = [e for e in recorded.completed(subresource) if e["auditID"] == path.stem]
    annotations = event["annotations"]
    assert annotations["kube-front-proxy/session"] == str(path)
    assert int(annotations["kube-front-proxy/session-bytes-out"]) > 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# -- TTY: kubectl exec -it ----------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_exec_it_is_recorded_as_the_user_saw_it(recorded: Recorded, protocol: str) -> None:
    before = recorded.casts()
    terminal = Terminal(recorded.proxy, REMOTE_COMMAND_ENV[protocol], "cat")
    terminal.wait_for_raw_mode()
    path = new_cast(recorded, before)
    # kubectl sends the size on its own goroutine once the streams are up: then the window
    # grows (the kernel would signal kubectl; this pty is not its controlling terminal).
    wait_until(lambda: '"r", "100x40"' in path.read_text(), TIMEOUT, "the first size")
    terminal.type(b"hello\r")
    terminal.read_until(b"hello\r")
    terminal.resize(ROWS + 10, COLS + 20)
    wait_until(lambda: '"r", "120x50"' in path.read_text(), TIMEOUT, "the new size")
    terminal.type(b"\x04")  # ^D at the start of a line ends cat
    code, output, stderr = terminal.finish()
    assert (code, output, stderr) == (0, b"hello\r", b"")

    own = ended(path)["kube_front_proxy"]
    header, events = asciinema_read(path)
    assert header["version"] == 2
    assert (header["width"], header["height"]) == (COLS, ROWS)  # the first size
    assert header["title"] == "alice: exec default/nginx-1 -c nginx -- cat"
    assert own["protocol"] == SUBPROTOCOL[protocol] and own["tty"] is True
    assert text(events, "i") == "hello\r\x04"
    assert text(events, "o") == "hello\r"
    assert [e[2] for e in events if e[1] == "r"] == [f"{COLS}x{ROWS}", f"{COLS + 20}x{ROWS + 10}"]
    assert [e[0] for e in events] == sorted(e[0] for e in events)
    assert asciinema_cat(path) == output
    # Replayed in time (idle gaps cut to 0.1 s): the same output; the keys typed, on their own.
    assert asciinema("play", "-i", "0.1", str(path)) == output
    assert asciinema("play", "-i", "0.1", "--stream", "i", str(path)) == b"hello\r\x04"
    assert_named_by_its_audit_event(recorded, path, "exec")


# -- no TTY: exec -i, attach, output on stdout and stderr ---------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_exec_i_and_attach_are_recorded(recorded: Recorded, protocol: str) -> None:
    env = REMOTE_COMMAND_ENV[protocol]
    for args, stdin, title, subresource in (
        (["exec", "-i", "nginx-1", "--", "cat"], b"line one\nline two\n",
         "alice: exec default/nginx-1 -c nginx -- cat", "exec"),
        (["attach", "-i", "nginx-1"], b"attached\n", "alice: attach default/nginx-1 -c nginx",
         "attach"),
        (["exec", "nginx-1", "--", "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"], b"",
         "alice: exec default/nginx-1 -c nginx -- sh -c 'echo to-stdout; echo to-stderr >&2; "
         "exit 3'", "exec"),
    ):  # fmt: skip
        before = recorded.casts()
        result = kubectl(recorded.proxy, *args, env=env, stdin=stdin)
        assert result.returncode in (0, 3), result.stderr
        path = new_cast(recorded, before)
        own = ended(path)["kube_front_proxy"]
        header, events = asciinema_read(path)
        assert (header["width"], header["height"]) == (80, 24)
        assert header["title"] == title
        assert own["tty"] is False and own["protocol"] == SUBPROTOCOL[protocol]
        assert text(events, "i") == stdin.decode()
        shown = asciinema_cat(path)
        if stdin:
            assert shown == result.stdout == stdin
        else:
            # stdout and stderr, each as the terminal got them (kubectl adds its own line).
            assert sorted(shown.splitlines()) == [b"to-stderr", b"to-stdout"]
            assert result.stderr.startswith(b"to-stderr\n")
        assert (own["bytes_in"], own["bytes_out"]) == (len(stdin), len(shown))
        assert_named_by_its_audit_event(recorded, path, subresource)


# -- kubectl cp, the listing, the flows ---------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cp_sessions_are_recorded_and_listed(
    recorded: Recorded, tmp_path: Path, protocol: str
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "notes.txt").write_text("secret plans\n")
    before = recorded.casts()
    result = kubectl(recorded.proxy, "cp", str(source), f"nginx-1:/tmp/rec-{protocol}",
                     env=REMOTE_COMMAND_ENV[protocol])  # fmt: skip
    assert result.returncode == 0, result.stderr
    # `test -d` first, then `tar -xmf -` with the archive on stdin.
    new = wait_until(lambda: len(recorded.casts() - before) == 2 and recorded.casts() - before,
                   TIMEOUT, "two recordings")  # fmt: skip
    headers = {p: ended(p) for p in new}
    [tar] = [p for p, h in headers.items() if h["kube_front_proxy"]["command"][0] == "tar"]
    _, events = asciinema_read(tar)
    assert "secret plans\n" in text(events, "i")  # the archive, as text
    # Go's archive/tar: the file's header and data blocks, then two zero blocks.
    assert headers[tar]["kube_front_proxy"]["bytes_in"] == 4 * 512

    listing = subprocess.run(
        [str(BIN / "kube-front-proxy-audit"), "sessions", str(recorded.sessions)],
        capture_output=True, text=True, timeout=TIMEOUT, check=True,
    ).stdout.splitlines()  # fmt: skip
    assert listing[0].split() == ["START", "USER", "VERB", "POD", "CONTAINER", "COMMAND",
                                  "DURATION", "IN", "OUT", "TRUNCATED", "FILE"]  # fmt: skip
    [line] = [line for line in listing if line.endswith(tar.name)]
    fields = line.split()
    assert fields[1:5] == ["alice", "exec", "default/nginx-1", "nginx"]
    assert "  tar -xmf - -C /tmp  " in line
    assert fields[-2] == "no" and int(fields[-4]) == headers[tar]["kube_front_proxy"]["bytes_in"]
    assert len(listing) == 1 + len(recorded.casts())


def test_flow_comments_name_the_recordings(recorded: Recorded) -> None:
    # What mitmweb shows in its comment column is what a saved flow (-w) carries.
    before = recorded.casts()
    for protocol in PROTOCOLS:
        result = kubectl(recorded.proxy, "exec", "nginx-1", "--", "true",
                         env=REMOTE_COMMAND_ENV[protocol])  # fmt: skip
        assert result.returncode == 0, result.stderr
    paths = wait_until(lambda: len(recorded.casts() - before) == 2 and recorded.casts() - before,
                     TIMEOUT, "two recordings")  # fmt: skip
    expected = {f"user alice; session recorded in {p}" for p in paths}

    def comments() -> bool:
        with recorded.flows.open("rb") as f:
            flows = list(io.FlowReader(f).stream())
        exec_flows = {f.comment for f in flows if isinstance(f, http.HTTPFlow)
                      and f.request.path.startswith(EXEC + "?command=true")}  # fmt: skip
        # Over SPDY the session itself is a TCP flow of its own, labelled the same way.
        spdy_flows = {f.comment for f in flows if isinstance(f, tcp.TCPFlow)}
        return exec_flows >= expected and bool(spdy_flows & expected)

    wait_until(comments, TIMEOUT, "the saved flows")


# -- port-forward: counted, not recorded ---------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_port_forward_is_counted_not_recorded(recorded: Recorded, protocol: str) -> None:
    before = recorded.casts()
    started = len(recorded.completed("portforward"))
    proc = recorded.proxy.kubectl_running(
        "port-forward", "pod/nginx-1", ":7", env=PORT_FORWARD_ENV[protocol]
    )
    try:
        ports = read_forwarded_ports(proc, 1)
        data = os.urandom(256 * 1024)
        assert talk(ports[7], data) == data
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=TIMEOUT)
    events = wait_until(
        lambda: recorded.completed("portforward")[started:], TIMEOUT, "the audit event"
    )
    annotations = events[0]["annotations"]
    assert "kube-front-proxy/session" not in annotations
    assert int(annotations["kube-front-proxy/session-bytes-in"]) >= len(data)
    assert int(annotations["kube-front-proxy/session-bytes-out"]) >= len(data)
    assert float(annotations["kube-front-proxy/session-duration-seconds"]) > 0
    assert recorded.casts() == before


# -- when recording is impossible ---------------------------------------------------------------


def block(directory: Path) -> None:
    """Make the sessions directory unusable, for root too: a file where it was."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.write_text("not a directory\n")


def unblock(directory: Path) -> None:
    directory.unlink()
    directory.mkdir(mode=0o700)


def test_an_unwritable_directory_never_breaks_a_session(
    pki: Path, emulator: Emulator, tmp_path: Path
) -> None:
    r = start_recorded(pki, tmp_path, emulator.port)
    try:
        block(r.sessions)
        for protocol in PROTOCOLS:
            result = kubectl(r.proxy, "exec", "-i", "nginx-1", "--", "cat",
                             env=REMOTE_COMMAND_ENV[protocol], stdin=b"still works\n")  # fmt: skip
            assert (result.returncode, result.stdout) == (0, b"still works\n"), result.stderr
        assert r.metric("kube_front_proxy_session_recording_failures_total", stage="open") == 2
        events = wait_until(
            lambda: len(r.completed("exec")) == 2 and r.completed("exec"), TIMEOUT, "events"
        )
        for event in events:
            assert "kube-front-proxy/session" not in event["annotations"]
            assert event["annotations"]["kube-front-proxy/session-error"] == (
                "not recorded: Not a directory"
            )
        assert r.proxy.process.output().count("cannot record alice's exec session in") == 2
    finally:
        r.proxy.process.stop()


def test_fail_closed_refuses_sessions_while_recording_is_impossible(
    pki: Path, emulator: Emulator, tmp_path: Path
) -> None:
    r = start_recorded(pki, tmp_path, emulator.port, sessions_required=True)
    try:
        block(r.sessions)
        for protocol in PROTOCOLS:
            before = len(emulator.requests())
            result = kubectl(r.proxy, "exec", "nginx-1", "--", "echo", "hi",
                             env=REMOTE_COMMAND_ENV[protocol])  # fmt: skip
            assert result.returncode == 1 and result.stdout == b""
            assert b"cannot be recorded now, and recording is required" in result.stderr
            # Refused before upgrading: the API server never saw an exec.
            assert upgrade_records(emulator, before, EXEC) == []
        refusals = [e for e in r.completed("exec") if e["responseStatus"]["code"] == 503]
        assert refusals and all(e["responseStatus"]["reason"] == "ServiceUnavailable"
                                for e in refusals)  # fmt: skip
        # Recording possible again: sessions are allowed again.
        unblock(r.sessions)
        result = kubectl(r.proxy, "exec", "nginx-1", "--", "echo", "hi",
                         env=REMOTE_COMMAND_ENV["websocket"])  # fmt: skip
        assert (result.returncode, result.stdout) == (0, b"hi\n"), result.stderr
        assert len(r.casts()) == 1
    finally:
        r.proxy.process.stop()


def start_with_file_size_limit(pki: Path, workdir: Path, upstream: int, limit: int,
                               **audit: Any) -> Recorded:  # fmt: skip
    """The proxy as `prlimit --fsize=limit` runs it: a write that would take any of its files
    past `limit` bytes fails (EFBIG; Python ignores SIGXFSZ), as a full disk makes it fail."""
    workdir.mkdir(parents=True, exist_ok=True)
    write_users(workdir)
    port, metrics = free_port(), free_port()
    sessions, log = workdir / "sessions", workdir / "audit.log"
    config = write_yaml(workdir / "config.yaml", proxy_config(
        pki, upstream, port, metrics={"listen": f"127.0.0.1:{metrics}"},
        audit={"path": str(log), "sessions_dir": str(sessions), **audit},
    ))  # fmt: skip
    process = Process(
        ["prlimit", f"--fsize={limit}", str(BIN / "mitmdump"), "-s",
         str(REPO / "addon" / "k8s_auth.py"), "--set", f"k8s_auth_config={config}"],
        workdir / "mitmdump.out",
    )  # fmt: skip
    process.wait_for(rf"listening at 127\.0\.0\.1:{port}")
    return Recorded(Proxy(process, port, config, pki, workdir), sessions, log, metrics, Path("-"))


@pytest.mark.parametrize("required", [False, True], ids=["lenient", "required"])
def test_a_disk_that_fills_up_mid_session(
    pki: Path, emulator: Emulator, tmp_path: Path, required: bool
) -> None:
    r = start_with_file_size_limit(pki, tmp_path, emulator.port, 2 * MiB,
                                   sessions_required=required)  # fmt: skip
    data = b"".join(b"%07d this line is typed and printed\n" % i for i in range(100_000))
    try:
        result = kubectl(r.proxy, "exec", "-i", "nginx-1", "--", "cat",
                         env=REMOTE_COMMAND_ENV["websocket"], stdin=data)  # fmt: skip
        if required:
            # The session is closed when its recording fails: the rest is never relayed.
            assert result.returncode != 0 and len(result.stdout) < len(data)
        else:
            assert (result.returncode, result.stdout == data) == (0, True), result.stderr
        [path] = wait_until(r.casts, TIMEOUT, "the recording")
        own = ended(path)["kube_front_proxy"]
        assert own["error"] == "recording stopped: File too large"
        assert path.stat().st_size <= 2 * MiB
        _, events = asciinema_read(path)  # cut at its last complete line
        assert events and data.decode().startswith(text(events, "i"))
        assert r.metric("kube_front_proxy_session_recording_failures_total", stage="write") == 1
        output = r.proxy.process.output()
        assert "recording " + str(path) + " stopped: File too large" in output
        assert ("; session closed" in output) == required
    finally:
        r.proxy.process.stop()


# -- a big kubectl cp: memory and the size limit ------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_recording_a_200_mb_cp_holds_little_and_stops_at_the_limit(
    pki: Path, emulator: Emulator, tmp_path: Path, protocol: str
) -> None:
    r = start_recorded(pki, tmp_path / "proxy", emulator.port, sessions_max_mb=8)
    source = tmp_path / "big.bin"
    with source.open("wb") as f:
        for _ in range(200):
            f.write(os.urandom(MiB))
    try:
        with PeakRss(r.proxy.process.proc.pid) as rss:
            result = subprocess.run(
                [KUBECTL, "--kubeconfig", str(r.proxy.kubeconfig("alice")), "cp", str(source),
                 f"nginx-1:/tmp/big-{protocol}.bin"],
                capture_output=True, timeout=300,
                env={**os.environ, **REMOTE_COMMAND_ENV[protocol]},
            )  # fmt: skip
        assert result.returncode == 0, result.stderr
        print(f"{protocol}: RSS {rss.before:.0f} -> peak {rss.peak:.0f} MiB")
        assert rss.growth < 16
        [tar] = [p for p in r.casts() if ended(p)["kube_front_proxy"]["command"][0] == "tar"]
        own = ended(tar)["kube_front_proxy"]
        assert tar.stat().st_size <= 8 * MiB
        assert own["truncated"] is True and own["bytes_in"] > 200 * MiB
        asciinema_read(tar)
    finally:
        r.proxy.process.stop()
