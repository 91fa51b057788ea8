"""End to end with real kubectl: the credential plugin (kube-front-proxy-login) in a kubeconfig
that holds no password, session tokens from POST /kube-front-proxy/v1/token, their expiry and
revocation, the password asked on a terminal, and no token or password in any flow, log or
audit event."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import stat
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.api_paths import EXEC
from tests.support.configs import htpasswd_add, read_json_lines
from tests.support.harness import Emulator, Proxy, start_proxy_for
from tests.support.processes import BIN, KUBECTL
from tests.support.redis_server import RedisServer
from tests.support.terminal import Terminal
from tests.support.upgrades import REMOTE_COMMAND_ENV, upgrade_records
from tests.support.users import ALICE_PASSWORD, basic_header
from tests.support.waiting import wait_until

PLUGIN = str(BIN / "kube-front-proxy-login")
TIMEOUT = 60
ISSUED = re.compile(r"session token (\S+) issued to (\S+) \((\S+) login\)")
WHOAMI_ALICE = {
    "username": "alice",
    "uid": "1001",
    "groups": ["developers", "system:masters", "a,b", "system:authenticated"],
}


def start(
    pki: Path, emulator: Emulator, workdir: Path, key: bytes | None = None,
    state: dict[str, Any] | None = None, **session: Any,
) -> Proxy:  # fmt: skip
    workdir.mkdir(parents=True, exist_ok=True)
    key = key or os.urandom(32)
    (workdir / "session-key").write_text(base64.b64encode(key).decode() + "\n")
    if "revocation_file" in session:
        (workdir / session["revocation_file"]).write_text("")
    return start_proxy_for(
        pki, workdir, emulator.port,
        "-w", str(workdir / "flows.mitm"),
        # The most the proxy ever logs: every flow's headers and bodies, debug lines.
        "--set", "flow_detail=4", "--set", "termlog_verbosity=debug",
        authn={"session_tokens": {"signing_key_file": "session-key", **session}},
        audit={"path": str(workdir / "audit.log")},
        reload={"interval_seconds": 1},
        **({"state": state} if state else {}),
    )  # fmt: skip


@pytest.fixture(scope="module")
def proxy(
    pki: Path, emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    p = start(pki, emulator, tmp_path_factory.mktemp("session-tokens"))
    yield p
    p.process.stop()


@pytest.fixture
def own(pki: Path, emulator: Emulator, tmp_path: Path) -> Iterator[Proxy]:
    """A proxy for one test, which changes its files or its token lifetime."""
    p = start(pki, emulator, tmp_path / "proxy", ttl_seconds=3, revocation_file="revoked.yaml")
    yield p
    p.process.stop()


class User:
    """A user's machine: a home folder (the plugin's cache) and a kubeconfig made by the plugin."""

    def __init__(self, proxy: Proxy, home: Path, name: str = "alice") -> None:
        self.proxy, self.home, self.name = proxy, home, name
        home.mkdir(parents=True, exist_ok=True)
        made = self.plugin("kubeconfig", "--server", f"https://127.0.0.1:{proxy.port}",
                           "--certificate-authority", str(proxy.pki / "proxy-ca.crt"),
                           "--username", name)  # fmt: skip
        assert made.returncode == 0, made.stderr
        self.kubeconfig = home / ".kube" / "config"
        self.kubeconfig.parent.mkdir(exist_ok=True)
        self.kubeconfig.write_text(made.stdout)

    def env(self, password: str | None, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG",)}
        env.pop("KUBE_FRONT_PROXY_PASSWORD", None)
        env.update(HOME=str(self.home), **extra)
        if password is not None:
            env["KUBE_FRONT_PROXY_PASSWORD"] = password
        return env

    def plugin(self, *args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PLUGIN, *args], capture_output=True, text=True, timeout=TIMEOUT,
                              env=self.env(password), stdin=subprocess.DEVNULL)  # fmt: skip

    def kubectl(
        self, *args: str, password: str | None = ALICE_PASSWORD, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        env = self.env(password, **extra)
        return subprocess.run([KUBECTL, *args], capture_output=True, text=True, timeout=TIMEOUT,
                              env=env, stdin=subprocess.DEVNULL)  # fmt: skip

    def whoami(self, password: str | None = ALICE_PASSWORD) -> dict[str, Any]:
        result = self.kubectl("auth", "whoami", "-o", "json", password=password)
        assert result.returncode == 0, result.stderr
        info: dict[str, Any] = json.loads(result.stdout)["status"]["userInfo"]
        return info

    def cache_files(self) -> list[Path]:
        return sorted((self.home / ".kube" / "cache" / "kube-front-proxy").glob("*.json"))

    def cached(self) -> dict[str, Any]:
        [path] = self.cache_files()
        data: dict[str, Any] = json.loads(path.read_text())
        return data


def issued(proxy: Proxy) -> list[tuple[str, str, str]]:
    """(token id, user, login) of every token the proxy issued, from its log."""
    return ISSUED.findall(proxy.process.output())


def token_id(token: str) -> str:
    payload = token.split(".")[1]
    jti: str = json.loads(base64.urlsafe_b64decode(payload + "=="))["jti"]
    return jti


def assert_no_secrets(
    proxy: Proxy, emulator: Emulator, tokens: list[str], passwords: list[str]
) -> None:
    """No token, password or Basic credential in the flow file, the proxy's log, the audit log
    or anything the API server received."""
    secrets = [t.encode() for t in tokens]
    for user, password in (("alice", p) for p in passwords):
        secrets += [password.encode(), basic_header(user, password)[1].split()[1].encode()]
    # A token without its signature still names the user and id: keep out its signed part too.
    secrets += [t.rsplit(".", 1)[1].encode() for t in tokens]
    blobs = {
        "flows": (proxy.workdir / "flows.mitm").read_bytes(),
        "log": proxy.process.output().encode(),
        "audit": (proxy.workdir / "audit.log").read_bytes(),
        "API server": emulator.request_log.read_bytes(),
    }
    for name, blob in blobs.items():
        for secret in secrets:
            assert secret not in blob, f"a secret in the {name}"


# -- a kubeconfig without a password -----------------------------------------------------------


def test_a_new_user_types_the_password_once_per_token(
    proxy: Proxy, emulator: Emulator, tmp_path: Path
) -> None:
    user = User(proxy, tmp_path / "home")
    config = user.kubeconfig.read_text()
    assert ALICE_PASSWORD not in config and "password" not in config and "token:" not in config
    assert "interactiveMode: IfAvailable" in config and "provideClusterInfo: true" in config

    before, emulated = len(issued(proxy)), len(emulator.requests())
    for _ in range(3):
        assert {k: v for k, v in user.whoami().items() if k != "extra"} == WHOAMI_ALICE
    # One token for the three commands: the plugin reuses its cache.
    [(jti, who, login)] = issued(proxy)[before:]
    assert (who, login) == ("alice", "htpasswd")
    cached = user.cached()
    assert token_id(cached["token"]) == jti
    assert ALICE_PASSWORD not in json.dumps(cached)
    [path] = user.cache_files()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

    # The API server saw alice through the proxy's headers, never the token or the endpoint.
    received = emulator.requests()[emulated:]
    assert received and all(not r["path"].startswith("/kube-front-proxy") for r in received)
    for record in received:
        names = [n.lower() for n, _ in record["headers"]]
        assert "authorization" not in names
        assert ("x-remote-user", "alice") in [(n.lower(), v) for n, v in record["headers"]]
    assert_no_secrets(proxy, emulator, [cached["token"]], [ALICE_PASSWORD])


def test_audit_and_flows_name_the_token_by_its_id(
    proxy: Proxy, emulator: Emulator, tmp_path: Path
) -> None:
    user = User(proxy, tmp_path / "home")
    user.whoami()
    token = user.cached()["token"]
    jti = token_id(token)
    events = read_json_lines(proxy.workdir / "audit.log")
    minted = [e for e in events if e["requestURI"] == "/kube-front-proxy/v1/token"
              and e["annotations"].get("kube-front-proxy/session-token-issued") == jti]  # fmt: skip
    assert minted and {e["stage"] for e in minted} == {"ResponseComplete"}
    assert minted[0]["annotations"]["kube-front-proxy/authenticator"] == "htpasswd"
    assert minted[0]["responseStatus"]["code"] == 200
    used = [e for e in events if e["annotations"].get("kube-front-proxy/session-token-id") == jti]
    assert used and all(e["user"]["username"] == "alice" for e in used)
    assert {e["annotations"]["kube-front-proxy/authenticator"] for e in used} == {"session-token"}
    assert {e["annotations"]["kube-front-proxy/session-token-issued-to"] for e in used} == {
        "htpasswd"}  # fmt: skip
    assert {e["verb"] for e in used} >= {"create"}  # the SelfSubjectReview
    assert_no_secrets(proxy, emulator, [token], [ALICE_PASSWORD])


def test_watch_and_exec_with_the_plugin(proxy: Proxy, emulator: Emulator, tmp_path: Path) -> None:
    user = User(proxy, tmp_path / "home")
    watch = user.kubectl("get", "pods", "-w", "--request-timeout=2s")
    assert watch.returncode == 0, watch.stderr
    assert "nginx-1" in watch.stdout
    for protocol, env in REMOTE_COMMAND_ENV.items():
        before = len(emulator.requests())
        result = user.kubectl("exec", "nginx-1", "--", "echo", "hello", protocol, **env)
        assert (result.returncode, result.stdout) == (0, f"hello {protocol}\n"), result.stderr
        [record] = upgrade_records(emulator, before, EXEC)
        assert ("x-remote-user", "alice") in [(n.lower(), v) for n, v in record["headers"]]
        assert "authorization" not in [n.lower() for n, _ in record["headers"]]
    assert len(user.cache_files()) == 1
    assert_no_secrets(proxy, emulator, [user.cached()["token"]], [ALICE_PASSWORD])


def test_logout_forgets_the_token(proxy: Proxy, tmp_path: Path) -> None:
    user = User(proxy, tmp_path / "home")
    user.whoami()
    first = user.cached()["token"]
    out = user.plugin("logout")
    assert out.returncode == 0 and "removed 1 cached token" in out.stderr
    assert user.cache_files() == []
    before = len(issued(proxy))
    user.whoami()
    assert len(issued(proxy)) == before + 1 and user.cached()["token"] != first
    # logout forgets locally only: the old token still works until it expires.
    status, _, _ = proxy.raw("GET", "/api", [("Authorization", f"Bearer {first}")])
    assert status == 200


def test_without_a_password_or_a_terminal_the_plugin_says_what_to_do(
    proxy: Proxy, emulator: Emulator, tmp_path: Path
) -> None:
    user = User(proxy, tmp_path / "home")
    result = user.kubectl("get", "pods", password=None)
    assert result.returncode != 0
    assert "no password for alice: set KUBE_FRONT_PROXY_PASSWORD" in result.stderr
    wrong = user.kubectl("get", "pods", password="not-the-password")
    assert wrong.returncode != 0 and "wrong user name or password" in wrong.stderr
    assert user.cache_files() == []
    assert_no_secrets(proxy, emulator, [], ["not-the-password"])


# -- expiry and refusal --------------------------------------------------------------------------


def test_an_expired_token_is_replaced_before_kubectl_sends_it(
    own: Proxy, emulator: Emulator, tmp_path: Path
) -> None:
    user = User(own, tmp_path / "home")
    assert user.whoami()["username"] == "alice"
    first = user.cached()
    # Until the token is no longer fresh (3 s, renewed 0.3 s before its end).
    time.sleep(max(0.0, first["expiresAt"] - 0.3 - time.time()) + 0.1)  # the scenario
    assert user.whoami()["username"] == "alice"
    second = user.cached()
    assert second["token"] != first["token"]
    assert [who for _, who, _ in issued(own)] == ["alice", "alice"]
    # kubectl asked the plugin again in time: the proxy never saw the expired token.
    assert "login refused" not in own.process.output()
    # The expired one is refused (as such: no lock-out charge, authn/session_tokens.py).
    time.sleep(max(0.0, first["expiresAt"] - time.time()))  # the scenario: it expires
    status, _, _ = own.raw("GET", "/api", [("Authorization", f"Bearer {first['token']}")])
    assert status == 401 and "session token expired" in own.process.output()
    assert_no_secrets(own, emulator, [first["token"], second["token"]], [ALICE_PASSWORD])


def wait_for_reload(proxy: Proxy, count: int) -> None:
    wait_until(
        lambda: proxy.process.output().count("configuration reloaded") >= count, 20,
        lambda: proxy.process.output()[-2000:],
    )  # fmt: skip


@pytest.mark.parametrize("command", [("auth", "whoami"), ("get", "pods")])
def test_a_revoked_token_makes_kubectl_log_in_again(
    own: Proxy, emulator: Emulator, tmp_path: Path, command: tuple[str, ...]
) -> None:
    """kubectl runs the plugin again after a 401 (client-go's exec authenticator refreshes its
    credentials); the plugin sees the same kubectl ask again and logs in anew."""
    user = User(own, tmp_path / "home")
    user.whoami()
    revoked = user.cached()["token"]
    (own.workdir / "revoked.yaml").write_text(f"tokens: [{token_id(revoked)}]\n")
    wait_for_reload(own, 1)
    result = user.kubectl(*command)
    assert result.returncode == 0, result.stderr
    assert "the proxy refused the cached token" in result.stderr
    assert "session token revoked" in own.process.output()
    assert [who for _, who, _ in issued(own)] == ["alice", "alice"]
    assert user.cached()["token"] != revoked
    assert_no_secrets(own, emulator, [revoked, user.cached()["token"]], [ALICE_PASSWORD])


def test_a_new_password_voids_the_token_and_kubectl_logs_in_with_it(
    own: Proxy, emulator: Emulator, tmp_path: Path
) -> None:
    user = User(own, tmp_path / "home")
    user.whoami()
    old = user.cached()["token"]
    htpasswd_add(own.workdir / "htpasswd", "alice", "a-new-pässword", "bcrypt")
    wait_for_reload(own, 1)
    status, _, _ = own.raw("GET", "/api", [("Authorization", f"Bearer {old}")])
    assert status == 401 and "session token voided" in own.process.output()
    assert user.whoami(password="a-new-pässword")["username"] == "alice"
    assert user.cached()["token"] != old
    assert_no_secrets(
        own, emulator, [old, user.cached()["token"]], [ALICE_PASSWORD, "a-new-pässword"]
    )


# -- the password on a terminal -------------------------------------------------------------------


class Terminal(Terminal):
    """kubectl with a pty as its controlling terminal (stdin, stdout and stderr), as in a
    shell; the test types on the master side."""

    def __init__(self, user: User, *args: str) -> None:
        self.master, slave = os.openpty()

        def controlling_terminal() -> None:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            [KUBECTL, *args], stdin=slave, stdout=slave, stderr=slave,
            env=user.env(None), start_new_session=True, preexec_fn=controlling_terminal,
        )  # fmt: skip
        os.close(slave)
        self.output = b""


def test_kubectl_asks_for_the_password_on_the_terminal_once(
    proxy: Proxy, emulator: Emulator, tmp_path: Path
) -> None:
    user = User(proxy, tmp_path / "home")
    prompt = f"Password for alice at https://127.0.0.1:{proxy.port}: ".encode()
    terminal = Terminal(user, "auth", "whoami")
    terminal.read_until(prompt)
    terminal.type(b"not-it\n")  # a typo first: asked again
    terminal.read_until(b"wrong user name or password")
    # The second prompt (getpass discards what was typed before it turns echo off and asks).
    terminal.read_until(b"wrong user name or password" + b"\r\n" + prompt)
    terminal.type(ALICE_PASSWORD.encode() + b"\n")
    code, raw, _ = terminal.finish()
    output = raw.decode(errors="replace")
    assert code == 0, output
    assert re.search(r"Username\s+alice", output)
    # Typed without echo: the password is on no screen.
    assert ALICE_PASSWORD not in output and "not-it" not in output

    again = Terminal(user, "get", "pods")
    code, raw, _ = again.finish()
    assert code == 0 and b"nginx-1" in raw and b"Password" not in raw
    assert_no_secrets(proxy, emulator, [user.cached()["token"]], [ALICE_PASSWORD, "not-it"])


def test_a_token_revoked_on_one_replica_is_refused_by_another(
    pki: Path, emulator: Emulator, tmp_path: Path
) -> None:
    """state.redis: the revocation file's token ids go into the set every process checks."""
    (tmp_path / "password").write_text("redis-Passw0rd\n")
    server = RedisServer(tmp_path / "redis", password="redis-Passw0rd")
    state = {"redis": server.state(tmp_path / "password")}
    key = os.urandom(32)
    one = start(pki, emulator, tmp_path / "one", key, state, revocation_file="revoked.yaml")
    (tmp_path / "two").mkdir()
    for name in ("htpasswd", "users.yaml"):  # the same files on every replica
        (tmp_path / "two" / name).write_bytes((one.workdir / name).read_bytes())
    two = start(pki, emulator, tmp_path / "two", key, state, revocation_file="revoked.yaml")
    try:
        status, _, body = one.raw("POST", "/kube-front-proxy/v1/token",
                                  [basic_header("alice", ALICE_PASSWORD)], b"")  # fmt: skip
        assert status == 200
        token = json.loads(body)["status"]["token"]
        used = [("Authorization", f"Bearer {token}")]
        assert two.raw("GET", "/api", used)[0] == 200  # the same key: any replica takes it
        (one.workdir / "revoked.yaml").write_text(f"tokens: [{token_id(token)}]\n")
        wait_for_reload(one, 1)
        one.process.wait_for("1 revoked token ids shared through state.redis")
        # The other replica's file does not list it: Redis does.
        assert two.raw("GET", "/api", used)[0] == 401
        assert "session token revoked" in two.process.output()
        assert one.raw("GET", "/api", used)[0] == 401
        assert_no_secrets(two, emulator, [token], [ALICE_PASSWORD])
    finally:
        for proxy in (one, two):
            proxy.process.stop()
        server.stop()
