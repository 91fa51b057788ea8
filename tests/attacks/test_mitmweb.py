"""Whoever uses mitmweb cannot make a request speak as a user, through mitmweb's own HTTP API.

mitmweb shows live traffic, and its Intercept pauses a request after the proxy has written the
identity headers: an edit there (another X-Remote-User, a system:masters group, or alice's
request turned into another one) then went to the API server over the front-proxy certificate.
The root cause closed: just before a vouched request leaves (once its upstream connection is
in hand, the last step before mitmproxy writes it), the proxy checks that it is still the
request it vouched for, head and body; a changed one is killed. A replay carries no credentials
and logs in again (refused). mitmproxy's inject.* commands, which would write a mitmweb user's
bytes into a logged-in user's exec session, are taken out.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devpki import issue, make_ca
from tests.emulator import websocket
from tests.support.api_paths import EXEC
from tests.support.harness import Emulator, Proxy, start_proxy_for
from tests.support.http1 import raw_request
from tests.support.mitmweb import MitmwebClient
from tests.support.processes import free_port
from tests.support.upgrades import RawTLS
from tests.support.users import basic_header, password_of
from tests.support.waiting import wait_until

WEB_TOKEN = "mitmweb-test-token"
USERS_CA = make_ca("users")
CAROL = issue(USERS_CA, "carol", organizations=["devs"])


@pytest.fixture(scope="module")
def web(
    pki: Path, emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Proxy, MitmwebClient]]:
    workdir = tmp_path_factory.mktemp("mitmweb")
    USERS_CA.write(workdir, "users-ca")
    web_port = free_port()
    proxy = start_proxy_for(
        pki, workdir, emulator.port,
        "--set", "web_open_browser=false", "--set", f"web_port={web_port}",
        "--set", f"web_password={WEB_TOKEN}",
        tool="mitmweb", upstream={"check_cluster_trust": False},
        authn={"client_ca": "users-ca.crt"},
    )  # fmt: skip
    yield proxy, MitmwebClient(web_port, WEB_TOKEN)
    proxy.process.stop()


def flows(client: MitmwebClient) -> list[dict[str, Any]]:
    status, body = client.call("GET", "/flows")
    assert status == 200, body
    result: list[dict[str, Any]] = json.loads(body)
    return result


def wait_for_flow(client: MitmwebClient, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    found = wait_until(
        lambda: [f for f in flows(client) if match(f)], 20, "no such flow in mitmweb"
    )
    return found[-1]


def with_path(marker: str) -> Callable[[dict[str, Any]], bool]:
    return lambda f: f.get("type") == "http" and marker in f["request"]["path"]


def reached(emulator: Emulator, marker: str) -> list[dict[str, Any]]:
    return [r for r in emulator.requests() if marker in r["path"]]


def identity(record: dict[str, Any]) -> list[list[str]]:
    return [[n.lower(), v] for n, v in record["headers"] if n.lower().startswith("x-remote-")]


class Pending:
    """alice's request, sent on a thread: it waits while mitmweb holds it."""

    def __init__(self, proxy: Proxy, path: str) -> None:
        self.result: tuple[int, bytes] | BaseException | None = None
        context = proxy.context()
        headers = [basic_header("alice", password_of("alice"))]

        def send() -> None:
            try:
                status, _, body = raw_request(
                    "127.0.0.1", proxy.port, context, "GET", path, headers, timeout=20
                )
                self.result = (status, body)
            except BaseException as e:  # the proxy killed it: the answer is the exception
                self.result = e

        self.thread = threading.Thread(target=send)
        self.thread.start()

    def outcome(self) -> tuple[int, bytes] | BaseException | None:
        self.thread.join(30)
        return self.result


@pytest.fixture
def intercepting(web: tuple[Proxy, MitmwebClient]) -> Iterator[tuple[Proxy, MitmwebClient]]:
    proxy, client = web
    status, body = client.call("PUT", "/options", {"intercept": "~q & ~u intercept-me"})
    assert status == 200, body
    yield proxy, client
    client.call("PUT", "/options", {"intercept": ""})
    client.call("POST", "/flows/resume")


def intercept(web: tuple[Proxy, MitmwebClient], marker: str) -> tuple[Pending, dict[str, Any]]:
    proxy, client = web
    pending = Pending(proxy, f"/api/v1/namespaces/default/pods?intercept-me={marker}")
    held = wait_for_flow(client, lambda f: with_path(marker)(f) and f["intercepted"])
    return pending, held


def edit_headers(headers: list[list[str]]) -> list[list[str]]:
    out = [h for h in headers if not h[0].lower().startswith("x-remote-")]
    return [*out, ["X-Remote-User", "system:admin"], ["X-Remote-Group", "system:masters"]]


EDITS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "identity": lambda r: {"headers": edit_headers(r["headers"])},
    "identity-lower-case": lambda r: {
        "headers": [[n.lower(), v] for n, v in edit_headers(r["headers"])]
    },
    "extra-group": lambda r: {"headers": [*r["headers"], ["x-remote-group", "system:masters"]]},
    "path": lambda r: {"path": r["path"].replace("default/pods", "kube-system/secrets")},
    "method": lambda r: {"method": "DELETE"},
    "body": lambda r: {"content": '{"kind":"Pod"}'},
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_an_intercepted_request_edited_in_mitmweb_never_reaches_the_api_server(
    intercepting: tuple[Proxy, MitmwebClient], emulator: Emulator, edit: str
) -> None:
    proxy, client = intercepting
    marker = f"edit-{edit}"
    pending, held = intercept(intercepting, marker)
    status, body = client.call(
        "PUT", f"/flows/{held['id']}", {"request": EDITS[edit](held["request"])}
    )
    assert status == 200, body
    status, body = client.call("POST", f"/flows/{held['id']}/resume")
    assert status == 200, body
    outcome = pending.outcome()
    assert reached(emulator, marker) == []
    assert not isinstance(outcome, tuple), outcome  # killed: no answer
    assert "changed after the proxy vouched for it" in proxy.process.output()


def test_over_http2_the_edited_stream_is_reset_and_the_connection_serves_on(
    intercepting: tuple[Proxy, MitmwebClient], emulator: Emulator
) -> None:
    proxy, client = intercepting
    h2 = proxy.h2()
    try:
        login = [basic_header("alice", password_of("alice"))]
        stream = h2.request("GET", "/api/v1/namespaces/default/pods?intercept-me=h2", login)
        held = wait_for_flow(client, lambda f: with_path("=h2")(f) and f["intercepted"])
        edit = {"request": EDITS["identity"](held["request"])}
        assert client.call("PUT", f"/flows/{held['id']}", edit)[0] == 200
        assert client.call("POST", f"/flows/{held['id']}/resume")[0] == 200
        assert h2.response(stream).reset is not None
        assert h2.response(h2.request("GET", "/api?after-h2", login)).status == 200
    finally:
        h2.close()
    assert reached(emulator, "=h2") == []
    [after] = reached(emulator, "after-h2")
    assert identity(after)[0] == ["x-remote-user", "alice"]


def test_an_intercepted_request_resumed_unchanged_is_sent_as_alice(
    intercepting: tuple[Proxy, MitmwebClient], emulator: Emulator
) -> None:
    pending, held = intercept(intercepting, "unchanged")
    _, client = intercepting
    assert client.call("POST", f"/flows/{held['id']}/resume")[0] == 200
    outcome = pending.outcome()
    assert isinstance(outcome, tuple) and outcome[0] == 200, outcome
    [record] = reached(emulator, "unchanged")
    assert identity(record)[0] == ["x-remote-user", "alice"]


def test_an_edit_reverted_before_resuming_is_sent(
    intercepting: tuple[Proxy, MitmwebClient], emulator: Emulator
) -> None:
    pending, held = intercept(intercepting, "reverted")
    _, client = intercepting
    edit = {"request": EDITS["identity"](held["request"])}
    assert client.call("PUT", f"/flows/{held['id']}", edit)[0] == 200
    assert client.call("POST", f"/flows/{held['id']}/revert")[0] == 200
    assert client.call("POST", f"/flows/{held['id']}/resume")[0] == 200
    outcome = pending.outcome()
    assert isinstance(outcome, tuple) and outcome[0] == 200, outcome
    [record] = reached(emulator, "reverted")
    assert identity(record)[0] == ["x-remote-user", "alice"]


def replay(client: MitmwebClient, flow_id: str) -> dict[str, Any]:
    assert client.call("POST", f"/flows/{flow_id}/replay")[0] == 200
    return wait_for_flow(
        client, lambda f: f["id"] == flow_id and f["is_replay"] and bool(f.get("response"))
    )


def test_a_replay_logs_in_again_and_is_refused(
    web: tuple[Proxy, MitmwebClient], emulator: Emulator
) -> None:
    proxy, client = web
    status, _, _ = proxy.raw(
        "GET",
        "/api/v1/namespaces/default/pods?replay-basic",
        [basic_header("alice", "alice-pässword")],
    )
    assert status == 200
    done = wait_for_flow(client, with_path("replay-basic"))
    assert replay(client, done["id"])["response"]["status_code"] == 401
    assert len(reached(emulator, "replay-basic")) == 1


def test_a_replay_of_a_certificate_login_is_refused(
    web: tuple[Proxy, MitmwebClient], emulator: Emulator, tmp_path: Path
) -> None:
    """The replay's request was not sent over carol's connection, which proved her key (and
    is still open, as kubectl keeps its connection): it logs in again, and carries nothing."""
    proxy, client = web
    cert, key = CAROL.write(tmp_path, "carol")
    context = proxy.context()
    context.load_cert_chain(cert, key)
    carol = http.client.HTTPSConnection("127.0.0.1", proxy.port, context=context, timeout=10)
    try:
        carol.request("GET", "/api?replay-cert")
        response = carol.getresponse()
        response.read()
        assert response.status == 200
        done = wait_for_flow(client, with_path("replay-cert"))
        assert replay(client, done["id"])["response"]["status_code"] == 401
    finally:
        carol.close()
    seen = [identity(r)[0] for r in reached(emulator, "replay-cert")]
    assert seen == [["x-remote-user", "carol"]]


@pytest.mark.parametrize("command", ["inject.websocket", "inject.tcp", "inject.udp"])
def test_injection_commands_are_taken_out(web: tuple[Proxy, MitmwebClient], command: str) -> None:
    _, client = web
    status, body = client.call("GET", "/commands")
    assert status == 200 and command not in json.loads(body)


def test_no_message_can_be_injected_into_an_exec_session(
    web: tuple[Proxy, MitmwebClient],
) -> None:
    """The emulator's `cat` echoes what reaches it: an injected stdin message would come back."""
    proxy, client = web
    conn = RawTLS(proxy.port, proxy.pki / "proxy-ca.crt")
    try:
        key = websocket.new_key()
        offer = [basic_header("alice", password_of("alice")),
                 ("Sec-WebSocket-Protocol", "v5.channel.k8s.io")]  # fmt: skip
        target = f"{EXEC}?command=cat&stdin=true&stdout=true&injection-test"
        conn.sock.sendall(websocket.client_request("GET", target, conn.host, key, offer))
        assert conn.response_head()[0] == 101
        session = wait_for_flow(client, lambda f: "injection-test" in f["request"]["path"])
        # stdin (channel 0), as a mitmweb user would type into alice's shell
        client.call(
            "POST", "/commands/inject.websocket",
            {"arguments": [f"@{session['id']}", "false", "\\x00injected\\n", "false"]},
        )  # fmt: skip
        conn.sock.sendall(
            websocket.client_frame(websocket.Opcode.BINARY, b"\x00typed\n")
            + websocket.client_frame(websocket.Opcode.BINARY, b"\xff\x00")
        )
        parser = websocket.FrameParser(from_client=False)
        events: list[websocket.Event] = []
        while not any(isinstance(e, websocket.Control) and e.opcode == 8 for e in events):
            events += parser.feed(conn.take())
    finally:
        conn.close()
    echoed = b"".join(e.data[1:] for e in events if isinstance(e, websocket.Message)
                      and e.data[:1] == b"\x01")  # fmt: skip
    assert echoed == b"typed\n"
