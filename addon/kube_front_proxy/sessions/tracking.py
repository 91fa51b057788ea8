"""Interactive sessions for audits: every exec and attach recorded, port-forward counted.

With `audit.sessions_dir` set, an exec or attach request that has logged in gets its recording
file before it is forwarded: `<sessions_dir>/<auditID>.cast`, asciicast v2
(`sessions/recording.py`), named in the request's audit event (annotation
`kube-front-proxy/session`) and in its flow's comment. When the API server switches protocols
(101), the session's messages are decoded as they are relayed (`sessions/remotecommand.py`):
WebSocket messages in the `websocket_message` hook, which sees every frame whole before it is
relayed (`seam/websocket_relay.py`); SPDY as raw TCP reads in `tcp_message`, the TCP flow found by
its client connection, as the upgrade's audit event is (`observe/recorder.py`). Both hooks hold the
connection's reads while they run (`seam/upgraded_backpressure.py`), so a slow disk slows the
session instead of filling memory. A port-forward session is not recorded; its audit event, like
every session's, gets the bytes relayed each way and the duration.

A recording that cannot be made (an unwritable directory, a full disk) is logged and counted
(`kube_front_proxy_session_recording_failures_total`) and the session goes on unrecorded, its
audit event saying why (`kube-front-proxy/session-error`). With `audit.sessions_required` the
proxy fails closed instead: an exec or attach whose file cannot be created is refused with a 503
Status before anything reaches the API server, and a session whose recording fails later has
the message that could not be written dropped and its connection closed.

Only requests whose path names a pod's exec, attach or portforward are looked at, and the other
hooks find nothing to do with one dictionary lookup: ordinary requests pay nothing measurable
(`bench/recording_cost.py`).
"""

from __future__ import annotations

import logging
import re
import shlex
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from mitmproxy import http, tcp

from kube_front_proxy.config.settings import AuditSettings
from kube_front_proxy.observe.audit import micro_time
from kube_front_proxy.observe.request_info import (
    RequestInfoError,
    go_false,
    parse_query,
    parse_request_info,
)
from kube_front_proxy.sessions.recording import Recording
from kube_front_proxy.sessions.remotecommand import Piece, SpdyChannels, WebSocketChannels
from kube_front_proxy.sessions.spdy_frames import SpdyError

logger = logging.getLogger("kube_front_proxy")

SESSION_ANNOTATION = "kube-front-proxy/session"
SESSION_ERROR_ANNOTATION = "kube-front-proxy/session-error"
BYTES_IN_ANNOTATION = "kube-front-proxy/session-bytes-in"
BYTES_OUT_ANNOTATION = "kube-front-proxy/session-bytes-out"
DURATION_ANNOTATION = "kube-front-proxy/session-duration-seconds"
REQUIRED_KEY = "audit.sessions_required"
REFUSAL = f"this session cannot be recorded now, and recording is required ({REQUIRED_KEY})"

RECORDED = ("exec", "attach")
COUNTED = ("portforward",)
# A first look, on the raw bytes of every request's target (looking up a header costs mitmproxy
# microseconds); session_request() then parses the candidates as the API server does.
_SESSION_PATH = re.compile(rb"/pods/[^/?]+/(?:exec|attach|portforward)(?:[?/]|$)")
# Audit IDs are the proxy's own UUIDs; nothing else may become a file name.
_AUDIT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class SessionRequest:
    """What an exec, attach or port-forward request asks for (core/v1 PodExecOptions)."""

    verb: str  # the subresource: exec, attach or portforward
    namespace: str
    pod: str
    container: str = ""
    command: tuple[str, ...] = ()
    tty: bool = False


def session_request(method: str, target: str) -> SessionRequest | None:
    """The session a request opens, None if it opens none."""
    try:
        info = parse_request_info(method, target)
    except RequestInfoError:
        return None
    if info.api_group or info.resource != "pods" or info.subresource not in RECORDED + COUNTED:
        return None
    query = parse_query(urlsplit(target).query)
    tty = query.get("tty") or []
    return SessionRequest(
        verb=info.subresource,
        namespace=info.namespace,
        pod=info.name,
        container=(query.get("container") or [""])[0],
        command=tuple(query.get("command", ())),
        tty=bool(tty) and not go_false(tty[0]),
    )


def title(user: str, request: SessionRequest) -> str:
    """`alice: exec default/nginx-1 -c nginx -- sh`, as one would type it to kubectl."""
    words = [f"{user}: {request.verb} {request.namespace}/{request.pod}"]
    if request.container:
        words.append(f"-c {request.container}")
    if request.command:
        words.append(f"-- {shlex.join(request.command)}")
    return " ".join(words)


Channels = WebSocketChannels | SpdyChannels


@dataclass
class Session:
    """One upgraded session: its request, its recording if any, what it relayed."""

    request: SessionRequest
    comment: str
    client_id: str
    recording: Recording | None = None
    error: str = ""
    started: float = field(default_factory=time.monotonic)
    channels: Channels | None = None
    bytes_in: int = 0
    bytes_out: int = 0

    def relayed(self, content: bytes, from_client: bool) -> None:
        """One message, counted, and recorded if this session is; may raise (the caller
        treats any error as a failed recording)."""
        if from_client:
            self.bytes_in += len(content)
        else:
            self.bytes_out += len(content)
        if self.recording is None or self.channels is None:
            return
        pieces: Iterable[Piece]
        if isinstance(self.channels, WebSocketChannels):
            piece = self.channels.message(content, from_client)
            pieces = (piece,) if piece else ()
        else:
            pieces = self.channels.data(content, from_client)
        for channel, data in pieces:
            self.recording.piece(channel, data)

    def annotations(self) -> dict[str, str]:
        out = {
            BYTES_IN_ANNOTATION: str(self.bytes_in),
            BYTES_OUT_ANNOTATION: str(self.bytes_out),
            DURATION_ANNOTATION: f"{time.monotonic() - self.started:.3f}",
        }
        if self.error:
            out[SESSION_ERROR_ANNOTATION] = self.error
        return out


@dataclass(frozen=True)
class Opened:
    """What opening a session decided: a refusal (fail-closed), annotations for its audit
    event."""

    refusal: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)


# What nearly every request gets: made once (a new dataclass costs a microsecond).
NOTHING = Opened()


def _noop(_stage: str) -> None:
    pass


class Sessions:
    """The sessions being opened (by flow id) and open (by client connection id)."""

    def __init__(
        self,
        directory: Path | None,
        max_bytes: int = 100 << 20,
        required: bool = False,
        failed: Callable[[str], None] = _noop,
        close_client: Callable[[str], object] = lambda _client_id: None,
    ) -> None:
        self.directory = directory
        # A plain attribute: every hook of every flow asks.
        self.enabled = directory is not None
        self.max_bytes = max_bytes
        self.required = required
        self._failed = failed
        self._close_client = close_client
        self._opening: dict[str, Session] = {}
        self._open: dict[str, Session] = {}
        if directory is not None:
            try:
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as e:
                logger.error("kube-front-proxy: session recordings: cannot create %s: %s",
                             directory, e.strerror or e)  # fmt: skip

    @classmethod
    def for_settings(
        cls,
        audit: AuditSettings | None,
        failed: Callable[[str], None] | None,
        close_client: Callable[[str], object],
    ) -> Sessions:
        if audit is None or audit.sessions_dir is None:
            return cls(None)
        return cls(audit.sessions_dir, audit.sessions_max_bytes, audit.sessions_required,
                   failed or _noop, close_client)  # fmt: skip

    def __len__(self) -> int:
        return len(self._opening) + len(self._open)

    # -- the upgrade request ------------------------------------------------------------------

    def request(self, flow: http.HTTPFlow) -> Opened:
        """A logged-in request, before it is forwarded."""
        if self.directory is None or not _SESSION_PATH.search(flow.request.data.path):
            return NOTHING
        request = session_request(flow.request.method, flow.request.path)
        if request is None:
            return NOTHING
        user = str(flow.metadata.get("k8s_user", ""))
        session = Session(request, flow.comment, flow.client_conn.id)
        annotations = {}
        if request.verb in RECORDED:
            audit_id = str(flow.metadata.get("k8s_audit_id", ""))
            path = self.directory / f"{audit_id}.cast"
            try:
                if not _AUDIT_ID.fullmatch(audit_id):
                    raise ValueError(f"no audit ID to name the file after ({audit_id!r})")
                session.recording = Recording.start(
                    path, self.max_bytes, title(user, request), _own_fields(audit_id, user, request)
                )
            except (OSError, ValueError) as e:
                reason = _reason(e)
                self._failed("open")
                logger.error("kube-front-proxy: cannot record %s's %s session in %s: %s%s",
                             user, request.verb, path, reason,
                             "; refused" if self.required else "")  # fmt: skip
                if self.required:
                    return Opened(REFUSAL)
                session.error = f"not recorded: {reason}"
                annotations[SESSION_ERROR_ANNOTATION] = session.error
                session.comment = flow.comment = f"{flow.comment}; session not recorded"
            else:
                annotations[SESSION_ANNOTATION] = str(path)
                session.comment = flow.comment = f"{flow.comment}; session recorded in {path}"
        self._opening[flow.id] = session
        return Opened(annotations=annotations)

    def response(self, flow: http.HTTPFlow) -> None:
        """The answer's head: a 101 starts the session, anything else means none took place."""
        session = self._opening.pop(flow.id, None)
        if session is None:
            return
        response = flow.response
        if response is None or response.status_code != 101:
            _discard(session)
            return
        if flow.websocket is not None:
            protocol = response.headers.get("sec-websocket-protocol", "")
            session.channels = WebSocketChannels(protocol)
        else:
            protocol = response.headers.get("x-stream-protocol-version", "")
            session.channels = SpdyChannels()
        session.started = time.monotonic()
        client_id = flow.client_conn.id
        self._finish(client_id, self._open.pop(client_id, None))
        self._open[client_id] = session
        if session.recording:
            # The API server's choice; cut, as it goes into the header's fixed room.
            protocol = protocol[:64]
            self._guarded(client_id, session, lambda: _note_protocol(session, protocol))

    def failed(self, flow: http.HTTPFlow) -> None:
        """The request failed before an answer: no session."""
        session = self._opening.pop(flow.id, None)
        if session:
            _discard(session)

    # -- the upgraded connection --------------------------------------------------------------

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        session = self._open.get(flow.client_conn.id)
        if session is not None and flow.websocket is not None:
            message = flow.websocket.messages[-1]
            if not self._relayed(flow.client_conn.id, session, message.content,
                                 message.from_client):  # fmt: skip
                message.drop()  # type: ignore[no-untyped-call]

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        session = self._open.get(flow.client_conn.id)
        if session is not None:
            flow.comment = session.comment

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        session = self._open.get(flow.client_conn.id)
        if session is not None:
            message = flow.messages[-1]
            if not self._relayed(flow.client_conn.id, session, message.content,
                                 message.from_client):  # fmt: skip
                message.content = b""

    def _relayed(self, client_id: str, session: Session, content: bytes, from_client: bool) -> bool:
        """False if the message must not be relayed: it could not be recorded (fail-closed)."""
        return self._guarded(client_id, session, lambda: session.relayed(content, from_client))

    def end(self, client_id: str) -> dict[str, str]:
        """The session of this connection is over: annotations for its audit event."""
        session = self._open.pop(client_id, None)
        if session is None:
            return {}
        self._finish(client_id, session)
        return session.annotations()

    def disconnected(self, client_id: str) -> dict[str, str]:
        """The client connection is gone: its session ends, and a request of it still waiting
        for its answer (which mitmproxy may never report) leaves no file behind."""
        if self._opening:
            for flow_id, session in list(self._opening.items()):
                if session.client_id == client_id:
                    del self._opening[flow_id]
                    _discard(session)
        return self.end(client_id)

    def close_all(self) -> None:
        """Shutting down: every file closed with what is known."""
        for session in self._opening.values():
            _discard(session)
        self._opening.clear()
        for client_id in list(self._open):
            self.end(client_id)

    def _finish(self, client_id: str, session: Session | None) -> None:
        if session is None or session.recording is None:
            return
        recording, session.recording = session.recording, None
        try:
            recording.finish(session.error)
        except OSError as e:
            self._write_failed(client_id, session, e, recording, close=False)

    def _guarded(self, client_id: str, session: Session, step: Callable[[], None]) -> bool:
        """Run one step of recording; False if the recording failed and the session must not
        go on unrecorded (fail-closed)."""
        try:
            step()
        except Exception as e:
            recording = session.recording
            if recording is None:
                raise  # counting failed: a bug, not the disk
            session.recording = None
            self._write_failed(client_id, session, e, recording, close=True)
            return not self.required
        return True

    def _write_failed(
        self,
        client_id: str,
        session: Session,
        error: Exception,
        recording: Recording,
        close: bool,
    ) -> None:
        reason = _reason(error)
        decoding = isinstance(error, SpdyError)
        session.error = f"recording stopped: {reason}"[:200]
        self._failed("decode" if decoding else "write")
        logger.error(
            "kube-front-proxy: recording %s stopped: %s%s",
            recording.cast.path,
            reason,
            "; session closed" if self.required and close else "",
            exc_info=not isinstance(error, (OSError, SpdyError)),  # anything else is a bug
        )
        if close:
            try:
                recording.finish(session.error)
            except OSError:
                recording.cast.close()
            if self.required:
                self._close_client(client_id)


def _own_fields(audit_id: str, user: str, request: SessionRequest) -> dict[str, object]:
    return {
        "auditID": audit_id,
        "user": user,
        "verb": request.verb,
        "namespace": request.namespace,
        "pod": request.pod,
        "container": request.container,
        "command": list(request.command),
        "tty": request.tty,
        "started": micro_time(time.time()),
    }


def _discard(session: Session) -> None:
    """No session took place: no file either."""
    if session.recording:
        session.recording.cast.discard()
        session.recording = None


def _note_protocol(session: Session, protocol: str) -> None:
    assert session.recording
    session.recording.note(protocol=protocol)


def _reason(error: Exception) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__
