"""The emulator's request log: one JSON object per line, one line per request.

Record format (`RequestLogRecord`):

    {"time": "2025-01-01T12:00:00.123456Z",
     "remote_addr": "127.0.0.1:50312",
     "tls_version": "TLSv1.3", "alpn": "http/1.1" | null,
     "method": "GET", "path": "/api/v1/pods?limit=500",        # raw request target
     "http_version": "HTTP/1.1",
     "headers": [["Host", "127.0.0.1:6443"], ["X-Remote-Group", "a"], ...],   # as received
     "trailers": [["Authorization", "..."], ...],          # request trailer fields, as received
     "body_length": 0, "body_sha256": "e3b0c442...",                # the body as read
     "source_ips": ["10.0.0.7", "127.0.0.1"],     # what kube-apiserver's audit records
     "peer_cert_cn": "front-proxy-client" | null, "peer_chain_len": 1,
     "authentication": {"authenticated": true,
                        "authenticator": "requestheader" | "x509" | "token" | "anonymous" | null,
                        "user": {"username": ..., "uid": ..., "groups": [...], "extra": {...}}
                                | null,
                        "error": "x509: ..." | null},
     "impersonated_user": {"username": ..., "uid": ..., "groups": [...], "extra": {...}} | null,
     "status": 200}

`authentication` is always who authenticated (for a proxy in impersonation mode: the proxy's own
identity). `impersonated_user` is who the request then acted as, after the impersonation filter
allowed the `Impersonate-*` headers (`system:authenticated` etc. added as the filter adds them);
null when the request asked for no impersonation or was refused (see `status`).

`source_ips` is the audit event's `sourceIPs`, computed as kube-apiserver does
(k8s.io/apimachinery/pkg/util/net/http.go `SourceIPs`): every valid address in the first
X-Forwarded-For header, then X-Real-Ip unless already listed, then the connection's address
unless it is already the last.

Header values that were not valid UTF-8 appear with their raw bytes as lone surrogates
(`\\udcXX` escapes), which `json.loads` reads back unchanged.
"""

from __future__ import annotations

import ipaddress
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, TypedDict


class UserRecord(TypedDict):
    username: str
    uid: str
    groups: list[str]
    extra: dict[str, list[str]]


class AuthenticationRecord(TypedDict):
    authenticated: bool
    authenticator: str | None
    user: UserRecord | None
    error: str | None


class RequestLogRecord(TypedDict):
    time: str
    remote_addr: str
    tls_version: str | None
    alpn: str | None
    method: str
    path: str
    http_version: str
    headers: list[list[str]]
    trailers: list[list[str]]
    body_length: int
    source_ips: list[str]
    body_sha256: str
    peer_cert_cn: str | None
    peer_chain_len: int
    authentication: AuthenticationRecord
    impersonated_user: UserRecord | None
    status: int


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def source_ips(headers: list[tuple[str, str]], remote_host: str) -> list[str]:
    """kube-apiserver's `SourceIPs`: X-Forwarded-For, X-Real-Ip, then the peer's address."""

    def first(name: str) -> str:
        return next((v for n, v in headers if n.lower() == name), "")

    found = [ip for part in first("x-forwarded-for").split(",") if (ip := _ip(part.strip()))]
    real = _ip(first("x-real-ip"))
    if real is not None and real not in found:
        found.append(real)
    remote = _ip(remote_host)
    if remote is not None and (not found or found[-1] != remote):
        found.append(remote)
    return [str(ip) for ip in found]


def load_request_log(path: str | Path) -> list[RequestLogRecord]:
    """Every record in a request log file, in order."""
    records: list[RequestLogRecord] = []
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            if line.strip():
                records.append(json.loads(line))
    return records


class RequestLog:
    """Thread-safe appender: memory always, and a file when a path is given.

    Each record is flushed as soon as it is written, so a test can read the file as soon as it
    has the response.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._records: list[RequestLogRecord] = []
        self._file: IO[str] | None = None
        # Called (outside the lock) after each record is stored, e.g. for an access log.
        self.on_append: Callable[[RequestLogRecord], None] | None = None
        if self.path is not None:
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held open

    def append(self, record: RequestLogRecord) -> None:
        line = json.dumps(record, ensure_ascii=True) + "\n"
        with self._lock:
            self._records.append(record)
            if self._file is not None:
                self._file.write(line)
                self._file.flush()
        if self.on_append is not None:
            self.on_append(record)

    def records(self) -> list[RequestLogRecord]:
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        """Forget the in-memory records (the file is left alone)."""
        with self._lock:
            self._records.clear()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
