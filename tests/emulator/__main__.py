"""`python -m tests.emulator`: run the emulated kube-apiserver.

Flags are named like kube-apiserver's (`k8s.io/apiserver pkg/server/options/serving.go`,
`pkg/server/options/authentication.go`, `k8s.io/kubernetes pkg/kubeapiserver/options/
authentication.go`). List flags take comma-separated values, and repeating a flag appends, like
pflag's StringSlice. Unlike kube-apiserver, the requestheader header flags default to kubeadm's
values. SIGTERM or SIGINT starts kube-apiserver's graceful termination (`EmulatorServer.shutdown`);
a second one ends the process at once, as `genericapiserver`'s signal handler does.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from .requestlog import RequestLogRecord
from .server import (
    DEFAULT_EXTRA_HEADERS_PREFIX,
    DEFAULT_GROUP_HEADERS,
    DEFAULT_UID_HEADERS,
    DEFAULT_USERNAME_HEADERS,
    Address,
    EmulatorConfig,
    EmulatorServer,
)


class _StringSlice(argparse.Action):
    """pflag StringSlice: the first use replaces the default, later uses append."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        seen = f"_{self.dest}_seen"
        previous = getattr(namespace, self.dest) if getattr(namespace, seen, False) else []
        text = values if isinstance(values, str) else ""
        # pflag reads the value as one CSV record; "" is an empty list.
        added = next(csv.reader([text])) if text else []
        setattr(namespace, self.dest, [*previous, *added])
        setattr(namespace, seen, True)


def _bool(text: str) -> bool:
    """Go's strconv.ParseBool."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r}")


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"invalid delay {text!r}: seconds, 0 or more")
    return seconds


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration(text: str) -> float:
    """Go's time.ParseDuration ("70s", "1m0s", "0"), in seconds; negative is refused."""
    if text == "0":
        return 0.0
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(f"time: invalid duration {text!r}")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def _chance(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid chance {text!r}") from None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tests.emulator",
        description="Emulated kube-apiserver: front-proxy authentication and a little API.",
    )
    p.add_argument("--bind-address", default="127.0.0.1")
    p.add_argument("--secure-port", type=int, default=6443, help="0 picks a free port")
    p.add_argument("--tls-cert-file", type=Path, required=True)
    p.add_argument("--tls-private-key-file", type=Path, required=True)
    p.add_argument("--client-ca-file", type=Path)
    p.add_argument("--requestheader-client-ca-file", type=Path)
    slices = {
        "--requestheader-allowed-names": (),
        "--requestheader-username-headers": DEFAULT_USERNAME_HEADERS,
        "--requestheader-group-headers": DEFAULT_GROUP_HEADERS,
        "--requestheader-extra-headers-prefix": DEFAULT_EXTRA_HEADERS_PREFIX,
        "--requestheader-uid-headers": DEFAULT_UID_HEADERS,
    }
    for flag, default in slices.items():
        p.add_argument(flag, action=_StringSlice, default=list(default), metavar="A,B")
    p.add_argument(
        "--anonymous-auth", type=_bool, nargs="?", const=True, default=True, metavar="BOOL"
    )
    p.add_argument("--token-auth-file", type=Path, help="static tokens: token,user,uid[,groups]")
    p.add_argument(
        "--authorization-mode",
        action=_StringSlice,
        default=["RBAC"],
        metavar="A,B",
        help="union of AlwaysAllow, AlwaysDeny, ABAC, RBAC (a stand-in; the default)",
    )
    p.add_argument("--authorization-policy-file", type=Path, help="ABAC policy, JSON lines")
    p.add_argument("--request-log", type=Path, help="append one JSON line per request")
    p.add_argument("--ready-file", type=Path, help="written with the URL once listening")
    p.add_argument(
        "--response-delay", type=_seconds, default=0.0, metavar="SECONDS",
        help="wait this long before every response",
    )  # fmt: skip
    p.add_argument(
        "--response-delay-file", type=Path, metavar="PATH",
        help="when it exists, its content replaces --response-delay (read per response)",
    )  # fmt: skip
    p.add_argument(
        "--not-ready-file", type=Path, metavar="PATH",
        help="while it exists, /readyz fails (500) as in a graceful shutdown",
    )  # fmt: skip
    p.add_argument("--disable-http2", action="store_true", help="offer only http/1.1 (ALPN), no h2")
    p.add_argument(
        "--watch-event-interval", type=_seconds, default=0.0, metavar="SECONDS",
        help="a pod watch sends a MODIFIED event this often (default 0: never)",
    )  # fmt: skip
    p.add_argument(
        "--goaway-chance", type=_chance, default=0.0, metavar="0..0.02",
        help="fraction of HTTP/2 requests answered with a GOAWAY of their connection",
    )  # fmt: skip
    p.add_argument(
        "--shutdown-delay-duration", type=_duration, default=0.0, metavar="DURATION",
        help="after SIGTERM, keep serving (with /readyz failing) this long",
    )  # fmt: skip
    p.add_argument(
        "--request-timeout", type=_duration, default=60.0, metavar="DURATION",
        help="how long a graceful shutdown waits for open requests (watches) before cutting them",
    )  # fmt: skip
    p.add_argument(
        "--idle-timeout", type=_duration, default=90.0, metavar="DURATION",
        help="test control: kube-apiserver's hard-coded 90s keep-alive idle timeout",
    )  # fmt: skip
    p.add_argument(
        "--chatty-log-bytes", type=int, default=0, metavar="BYTES",
        help="every pod's log goes on with this many bytes of stamped 16 KiB lines (default 0)",
    )  # fmt: skip
    p.add_argument("-q", "--quiet", action="store_true", help="no per-request lines on stderr")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    return EmulatorConfig(
        tls_cert_file=args.tls_cert_file,
        tls_private_key_file=args.tls_private_key_file,
        bind_address=args.bind_address,
        secure_port=args.secure_port,
        client_ca_file=args.client_ca_file,
        requestheader_client_ca_file=args.requestheader_client_ca_file,
        requestheader_allowed_names=tuple(args.requestheader_allowed_names),
        requestheader_username_headers=tuple(args.requestheader_username_headers),
        requestheader_group_headers=tuple(args.requestheader_group_headers),
        requestheader_extra_headers_prefix=tuple(args.requestheader_extra_headers_prefix),
        requestheader_uid_headers=tuple(args.requestheader_uid_headers),
        anonymous_auth=args.anonymous_auth,
        token_auth_file=args.token_auth_file,
        authorization_mode=tuple(args.authorization_mode),
        authorization_policy_file=args.authorization_policy_file,
        request_log=args.request_log,
        response_delay=args.response_delay,
        response_delay_file=args.response_delay_file,
        not_ready_file=args.not_ready_file,
        disable_http2=args.disable_http2,
        watch_event_interval=args.watch_event_interval,
        goaway_chance=args.goaway_chance,
        shutdown_delay_duration=args.shutdown_delay_duration,
        request_timeout=args.request_timeout,
        idle_timeout=args.idle_timeout,
        chatty_log_bytes=args.chatty_log_bytes,
    )


def _url(address: Address) -> str:
    host = f"[{address.host}]" if ":" in address.host else address.host
    return f"https://{host}:{address.port}"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", stream=sys.stderr)
    try:
        config = config_from_args(args)
        server = EmulatorServer(config)
        address = server.start()
    except (OSError, ValueError) as e:
        print(f"emulator: {e}", file=sys.stderr)
        return 1

    if not args.quiet:
        server.request_log.on_append = _print_record

    url = _url(address)
    if args.ready_file is not None:
        tmp = args.ready_file.with_name(args.ready_file.name + ".tmp")
        tmp.write_text(url + "\n")
        os.replace(tmp, args.ready_file)
    print(f"listening on {url}", flush=True)

    signalled = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        if signalled.is_set():
            os._exit(1)
        signalled.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while not signalled.wait(3600):
        pass
    server.shutdown()
    return 0


def _print_record(record: RequestLogRecord) -> None:
    auth = record["authentication"]
    who = auth["user"]["username"] if auth["user"] else f"<{auth['error'] or 'no credentials'}>"
    via = auth["authenticator"] or "-"
    impersonated = record["impersonated_user"]
    acting = f" as={impersonated['username']}" if impersonated else ""
    print(
        f"{record['method']} {record['path']} {record['status']} user={who}{acting} via={via}"
        f" cert={record['peer_cert_cn'] or '-'}",
        file=sys.stderr,
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
