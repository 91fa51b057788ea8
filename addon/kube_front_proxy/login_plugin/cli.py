"""kube-front-proxy-login: kubectl's credential plugin for kube-front-proxy.

kubectl runs it (a kubeconfig `exec` user, client.authentication.k8s.io/v1) whenever it needs a
token. It trades the user's password, once, for a session token from the proxy
(POST /kube-front-proxy/v1/token), caches the token under ~/.kube/cache/kube-front-proxy/
(mode 0600, one file per server and user) and prints it as an ExecCredential, reusing it until
shortly before it expires. The password is read from the terminal when kubectl allows it
(`interactiveMode: IfAvailable`), else from KUBE_FRONT_PROXY_PASSWORD; it is never written
anywhere.

    kube-front-proxy-login --username NAME            what kubectl runs
    kube-front-proxy-login logout [--server URL] [--username NAME]
    kube-front-proxy-login kubeconfig --server URL --certificate-authority FILE --username NAME

Only the standard library is used, so that it installs and starts lightly.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

TOKEN_PATH = "/kube-front-proxy/v1/token"
EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
PASSWORD_VARIABLE = "KUBE_FRONT_PROXY_PASSWORD"
EXEC_INFO_VARIABLE = "KUBERNETES_EXEC_INFO"
COMMAND = "kube-front-proxy-login"
# A cached token is handed out until this long before it expires (at most a tenth of its
# lifetime), so that a request made with it does not arrive after the end.
RENEW_BEFORE_SECONDS = 60.0
PASSWORD_ATTEMPTS = 3
TIMEOUT_SECONDS = 30.0


class LoginError(Exception):
    """Ends the plugin with this message on stderr (kubectl shows it) and exit status 1."""


@dataclass(frozen=True)
class Cluster:
    server: str
    ca_pem: str | None = field(default=None, repr=False)
    server_name: str | None = None  # TLS server name, when not the URL's host


@dataclass(frozen=True)
class ExecInfo:
    """What kubectl passes in KUBERNETES_EXEC_INFO (with provideClusterInfo: true)."""

    api_version: str = EXEC_API_VERSIONS[0]
    interactive: bool = False
    cluster: Cluster | None = None


# Who asked for a token: kubectl's process (its id and, on Linux, its start time).
Caller = tuple[int, int]
# kubectl runs the plugin once per process, and again only when its token expired or the proxy
# answered 401: a process asking again for a token it already has means the proxy refused it
# (revoked, voided by a new password, a new signing key). The last few callers are kept.
MAX_CALLERS = 16


@dataclass(frozen=True)
class Credential:
    token: str = field(repr=False)
    expires_at: float
    obtained_at: float
    handed_to: tuple[Caller, ...] = ()

    def fresh(self, now: float) -> bool:
        margin = min(RENEW_BEFORE_SECONDS, (self.expires_at - self.obtained_at) / 10)
        return now < self.expires_at - margin


def read_exec_info(environ: dict[str, str]) -> ExecInfo:
    raw = environ.get(EXEC_INFO_VARIABLE)
    if not raw:
        return ExecInfo()
    try:
        info = json.loads(raw)
    except ValueError:
        raise LoginError(f"{EXEC_INFO_VARIABLE} is not JSON") from None
    if not isinstance(info, dict):
        raise LoginError(f"{EXEC_INFO_VARIABLE} is not a JSON object")
    api_version = info.get("apiVersion", EXEC_API_VERSIONS[0])
    if api_version not in EXEC_API_VERSIONS:
        raise LoginError(f"unsupported exec credential version {api_version!r}; "
                         f"use {EXEC_API_VERSIONS[0]}")  # fmt: skip
    spec = info.get("spec") or {}
    cluster = None
    if isinstance(spec.get("cluster"), dict):
        cluster = _cluster_from_exec_info(spec["cluster"])
    return ExecInfo(api_version, spec.get("interactive") is True, cluster)


def _cluster_from_exec_info(data: dict[str, Any]) -> Cluster:
    if data.get("insecure-skip-tls-verify"):
        raise LoginError(
            "the cluster has insecure-skip-tls-verify: a password is never sent to a server "
            "whose certificate is not verified; set certificate-authority(-data) instead"
        )
    if data.get("proxy-url"):
        raise LoginError("the cluster's proxy-url is not supported")
    ca_pem = None
    if data.get("certificate-authority-data"):
        try:
            ca_pem = base64.b64decode(data["certificate-authority-data"]).decode("ascii")
        except (ValueError, UnicodeDecodeError):
            raise LoginError("certificate-authority-data is not base64 of a PEM file") from None
    return Cluster(str(data.get("server", "")), ca_pem, data.get("tls-server-name") or None)


def choose_cluster(info: ExecInfo, server: str | None, ca_file: str | None) -> Cluster:
    """--server and --certificate-authority win over what kubectl passed."""
    base = info.cluster or Cluster("")
    ca_pem = base.ca_pem
    if ca_file:
        try:
            ca_pem = Path(ca_file).expanduser().read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as e:
            raise LoginError(f"cannot read the certificate authority {ca_file}: {e}") from None
    cluster = Cluster(server or base.server, ca_pem, base.server_name)
    if not cluster.server:
        raise LoginError(
            "no server: set provideClusterInfo: true in the kubeconfig's exec section, or "
            "pass --server"
        )
    parts = urlsplit(cluster.server)
    if parts.scheme != "https" or not parts.hostname:
        raise LoginError(f"the server must be an https:// URL, not {cluster.server!r}")
    return cluster


# The cache: one JSON file per server and user, readable by its owner only.


def cache_dir() -> Path:
    return Path.home() / ".kube" / "cache" / "kube-front-proxy"


def cache_file(server: str, user: str) -> Path:
    name = hashlib.sha256(f"{server.rstrip('/')}\n{user}".encode()).hexdigest()[:40]
    return cache_dir() / f"{name}.json"


def load_cached(path: Path, server: str, user: str) -> Credential | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("server") != server.rstrip("/") or data.get("username") != user:
            return None
        handed_to = tuple((int(pid), int(start)) for pid, start in data.get("handedTo", ()))
        return Credential(
            str(data["token"]), float(data["expiresAt"]), float(data["obtainedAt"]), handed_to
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def save_cached(path: Path, server: str, user: str, credential: Credential) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = {
        "server": server.rstrip("/"),
        "username": user,
        "token": credential.token,
        "expiresAt": credential.expires_at,
        "obtainedAt": credential.obtained_at,
        "handedTo": [list(caller) for caller in credential.handed_to[-MAX_CALLERS:]],
    }
    # Written whole under a new name (created 0600), then renamed over the old one.
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()  # left by a plugin that died here with the same process id
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def forget_cached(server: str | None, user: str | None) -> list[Path]:
    """Remove cached tokens (those of a server and/or user if given); the files removed."""
    removed = []
    for path in sorted(cache_dir().glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        if not isinstance(data, dict):
            data = {}
        if server is not None and data.get("server") != server.rstrip("/"):
            continue
        if user is not None and data.get("username") != user:
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


def parse_credential(answer: dict[str, Any], now: float) -> Credential:
    status = answer.get("status")
    if answer.get("kind") != "ExecCredential" or not isinstance(status, dict):
        raise LoginError("the server's answer is not an ExecCredential")
    token, expiry = status.get("token"), status.get("expirationTimestamp")
    if not isinstance(token, str) or not token or not isinstance(expiry, str):
        raise LoginError("the server's answer has no token or no expirationTimestamp")
    try:
        expires_at = datetime.datetime.fromisoformat(expiry).timestamp()
    except ValueError:
        raise LoginError(f"the server's expirationTimestamp {expiry!r} is not RFC 3339") from None
    return Credential(token, expires_at, now)


def log_in(cluster: Cluster, user: str, info: ExecInfo, environ: dict[str, str]) -> Credential:
    """A new token for user, with the password from the environment or the terminal."""
    from_environment = environ.get(PASSWORD_VARIABLE)
    attempts = 1 if from_environment else PASSWORD_ATTEMPTS
    for attempt in range(1, attempts + 1):
        password = from_environment or ask_password(cluster, user, info)
        # Only now: http.client and ssl take most of the plugin's start-up time.
        from kube_front_proxy.login_plugin.transport import request_token

        status, answer = request_token(cluster, user, password)
        if status == 200:
            return parse_credential(answer, _now())
        message = answer.get("message") if isinstance(answer.get("message"), str) else ""
        if status == 401:
            problem = "wrong user name or password"
            if attempt < attempts:
                print(f"{COMMAND}: {problem}", file=sys.stderr)
                continue
            raise LoginError(problem)
        if status == 429:
            details = answer.get("details")
            wait = answer.get("retryAfter") or (
                details.get("retryAfterSeconds") if isinstance(details, dict) else None
            )
            raise LoginError(f"too many failed logins; try again in {wait} s" if wait else
                             "too many failed logins; try again later")  # fmt: skip
        raise LoginError(f"the server answered {status}: {message or 'no message'}")
    raise AssertionError("unreachable")


def ask_password(cluster: Cluster, user: str, info: ExecInfo) -> str:
    if not info.interactive:
        raise LoginError(
            f"no password for {user}: set {PASSWORD_VARIABLE}, or let kubectl ask "
            "(interactiveMode: IfAvailable, with kubectl in a terminal)"
        )
    import getpass  # only when asking: kubectl runs the plugin for every command

    try:
        password = getpass.getpass(f"Password for {user} at {cluster.server}: ")
    except (EOFError, KeyboardInterrupt):
        raise LoginError("no password given") from None
    if not password:
        raise LoginError("no password given")
    return password


def exec_credential(api_version: str, credential: Credential) -> str:
    expiry = datetime.datetime.fromtimestamp(credential.expires_at, datetime.UTC)
    return json.dumps({
        "apiVersion": api_version,
        "kind": "ExecCredential",
        "status": {
            "token": credential.token,
            "expirationTimestamp": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    })  # fmt: skip


def _now() -> float:
    return datetime.datetime.now(datetime.UTC).timestamp()


# The commands.


def get_credential(args: argparse.Namespace, environ: dict[str, str]) -> str:
    info = read_exec_info(environ)
    by_kubectl = environ.get(EXEC_INFO_VARIABLE) is not None
    if not by_kubectl and sys.stdin.isatty():
        info = ExecInfo(info.api_version, True, info.cluster)  # run by hand, in a terminal
    cluster = choose_cluster(info, args.server, args.certificate_authority)
    path = cache_file(cluster.server, args.username)
    credential = load_cached(path, cluster.server, args.username)
    caller = current_caller() if by_kubectl else None
    if credential is not None and credential.fresh(_now()) and caller in credential.handed_to:
        print(f"{COMMAND}: the proxy refused the cached token (revoked, or the password or the "
              "signing key changed): logging in again", file=sys.stderr)  # fmt: skip
        credential = None
    if credential is None or not credential.fresh(_now()):
        credential = log_in(cluster, args.username, info, environ)
    if caller is not None:
        credential = replace(credential, handed_to=(*credential.handed_to, caller))
    save_cached(path, cluster.server, args.username, credential)
    return exec_credential(info.api_version, credential)


def current_caller() -> Caller:
    """kubectl's process: the parent's id, and its start time where /proc tells it, so that a
    later process given the same id is another caller."""
    parent = os.getppid()
    try:
        stat = Path(f"/proc/{parent}/stat").read_text()
        # Field 22 (starttime) counted after the command name, which may hold spaces.
        start = int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        start = 0
    return parent, start


def logout(args: argparse.Namespace) -> str:
    removed = forget_cached(args.server, args.username)
    if not removed:
        return "no cached token to remove"
    return f"removed {len(removed)} cached token(s) from {cache_dir()}"


def kubeconfig(args: argparse.Namespace) -> str:
    """A kubeconfig whose user is this plugin: no password, no token in it."""
    cluster = choose_cluster(ExecInfo(), args.server, args.certificate_authority)
    command = args.command or _own_command()
    entry = [f"    server: {_q(cluster.server)}"]
    if cluster.ca_pem:
        data = base64.b64encode(cluster.ca_pem.encode("ascii")).decode("ascii")
        entry.append(f"    certificate-authority-data: {data}")
    name, user = _q(args.name), _q(args.username)
    return "\n".join([
        "apiVersion: v1",
        "kind: Config",
        "clusters:",
        f"- name: {name}",
        "  cluster:",
        *entry,
        "users:",
        f"- name: {user}",
        "  user:",
        "    exec:",
        f"      apiVersion: {EXEC_API_VERSIONS[0]}",
        f"      command: {_q(command)}",
        f"      args: [--username, {user}]",
        "      interactiveMode: IfAvailable",
        "      provideClusterInfo: true",
        "contexts:",
        f"- name: {name}",
        "  context:",
        f"    cluster: {name}",
        f"    user: {user}",
        f"current-context: {name}",
        "",
    ])  # fmt: skip


def _q(value: str) -> str:
    # A JSON string is a YAML double-quoted scalar.
    return json.dumps(value)


def _own_command() -> str:
    """This script's absolute path, so that kubectl finds it off PATH (in a venv) too."""
    here = Path(sys.argv[0])
    if here.name == COMMAND and here.is_file():
        return str(here.resolve())
    return COMMAND


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog=COMMAND,
        description="kubectl credential plugin for kube-front-proxy: trades a password for a "
        "short-lived token, cached under ~/.kube/cache/kube-front-proxy/.",
    )
    commands = top.add_subparsers(dest="subcommand")
    get = commands.add_parser("get", help="print an ExecCredential (what kubectl runs; default)")
    out = commands.add_parser("logout", help="remove cached tokens (all, or those selected)")
    config = commands.add_parser("kubeconfig", help="print a kubeconfig that uses this plugin")
    for sub in (get, config):
        sub.add_argument("--server", help="the proxy's URL (default: kubectl's cluster info)")
        sub.add_argument("--certificate-authority", metavar="FILE",
                         help="CA file that verifies the proxy (default: kubectl's cluster info, "
                         "else the system's trust store)")  # fmt: skip
    get.add_argument("--username", required=True)
    out.add_argument("--server")
    out.add_argument("--username")
    config.add_argument("--username", required=True)
    config.add_argument("--name", default="kube-front-proxy",
                        help="name of the cluster and context (default: %(default)s)")  # fmt: skip
    config.add_argument("--command", help=f"how kubectl runs the plugin (default: this {COMMAND})")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("get", "logout", "kubeconfig", "-h", "--help"):
        argv.insert(0, "get")
    args = parser().parse_args(argv)
    environ = dict(os.environ)
    try:
        if args.subcommand == "logout":
            print(logout(args), file=sys.stderr)
        elif args.subcommand == "kubeconfig":
            sys.stdout.write(kubeconfig(args))
        else:
            print(get_credential(args, environ))
    except LoginError as e:
        print(f"{COMMAND}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
