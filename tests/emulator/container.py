"""A pretend container for exec, cp and port-forward: an in-memory filesystem and a few commands.

Nothing here touches the real filesystem or starts a process. Commands behave like their GNU
coreutils/tar/POSIX sh namesakes closely enough for kubectl:

- `kubectl exec POD -- CMD...`: `echo`, `cat`, `true`, `false`, `test`, `ls`, `hostname`,
  `sleep`, `mkdir -p`, `sh -c SCRIPT` (simple commands joined by `;` or `&&`, `exit N`,
  `>&2`), and `tar`.
- `kubectl cp` (`k8s.io/kubectl pkg/cmd/cp/cp.go`) runs `test -d DEST` first, then
  `tar -xmf - [-C DIR]` (or with `--no-same-permissions --no-same-owner`) to copy in, and
  `tar cf - PATH` to copy out; its reader refuses members that do not start with the source
  path without its leading slash, which is how GNU tar names them (with a warning on stderr).
- `kubectl attach`: the main process echoes stdin to stdout, like `cat`.
- `kubectl exec -it`: the command reads its stdin through `TerminalInput`, so ^D at the start
  of a line ends it as a terminal would.
- port-forward and pods/proxy: every pod listens on port 80 (nginx serving
  /usr/share/nginx/html, `gzip_static on`: a file's `.gz` twin goes to clients that accept
  gzip) and port 7 (echo, RFC 862); any other port refuses the connection.

A command that cannot start (unknown name) raises `ExecFailed`, which the streaming protocols
report as an InternalError Status, as the kubelet does for runtime errors.
"""

from __future__ import annotations

import io
import posixpath
import shlex
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

INDEX_HTML = b"<!DOCTYPE html>\n<html><body><h1>Welcome to nginx!</h1></body></html>\n"
HTTP_PORT = 80
WEB_ROOT = "/usr/share/nginx/html"
CONTENT_TYPES = {".html": "text/html", ".json": "application/json", ".txt": "text/plain"}
ECHO_PORT = 7
MAX_SLEEP = 30.0


class Reader(Protocol):
    def read(self, n: int = ..., /) -> bytes: ...


class Writer(Protocol):
    def write(self, data: bytes, /) -> None: ...


class _Null:
    def read(self, n: int = -1, /) -> bytes:
        return b""

    def write(self, data: bytes, /) -> None:
        return None


@dataclass
class ExecIO:
    """The streams a command gets; None where kubectl asked for none (`stdin=false`...)."""

    stdin: Reader | None = None
    stdout: Writer | None = None
    stderr: Writer | None = None
    # Set once the client is gone: what a process attached to nothing waits for.
    hangup: threading.Event = field(default_factory=threading.Event)

    @property
    def inp(self) -> Reader:
        return self.stdin or _Null()

    @property
    def out(self) -> Writer:
        return self.stdout or _Null()

    @property
    def err(self) -> Writer:
        return self.stderr or _Null()


VEOF = 0x04  # ^D, the default `c_cc[VEOF]` (`stty -a`: eof = ^D)


class TerminalInput:
    """What a process reads from its pty when kubectl asked for a TTY, as far as ending the input
    goes: the terminal's canonical mode (Linux `drivers/tty/n_tty.c`, `n_tty_receive_char_special`
    and `canon_copy_from_read_buf`). ^D is never delivered: at the start of a line (CR or LF just
    before it, or nothing read yet) it reads as end of file, mid-line it hands over the line so
    far. Nothing else of a terminal is emulated: no echo, no CR/NL translation, no line editing.

    kubectl in raw mode sends every key as typed, so without this a `cat` in `kubectl exec -it`
    could never end.
    """

    def __init__(self, raw: Reader) -> None:
        self._raw = raw
        self._ready = b""
        self._line_start = True
        self._eof = False

    def read(self, n: int = 65536, /) -> bytes:
        while not self._ready and not self._eof:
            self._receive(self._raw.read(65536))
        data, self._ready = self._ready[:n], self._ready[n:]
        return data

    def _receive(self, chunk: bytes) -> None:
        if not chunk:
            self._eof = True
            return
        *lines, rest = chunk.split(bytes([VEOF]))
        for line in lines:
            self._ready += line
            if line.endswith((b"\r", b"\n")) if line else self._line_start:
                self._eof = True  # what follows is never read, as after a real EOF
                return
            self._line_start = True  # the partial line went out: the next ^D is an EOF
        self._ready += rest
        if rest:
            self._line_start = rest.endswith((b"\r", b"\n"))


class ExecFailed(Exception):
    """The runtime could not start the command (no exit code)."""


class Filesystem:
    """A pod's files: absolute normalized paths to bytes, plus the set of directories."""

    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        self._lock = threading.RLock()
        self.dirs: set[str] = {"/"}
        self.files: dict[str, bytes] = {}
        for path, data in (files or {}).items():
            self.write(path, data)

    @staticmethod
    def resolve(path: str, cwd: str = "/") -> str:
        # normpath of an absolute path never climbs above "/" (except POSIX's "//" case).
        resolved = posixpath.normpath(posixpath.join(cwd, path))
        return "/" + resolved.lstrip("/")

    def is_dir(self, path: str) -> bool:
        with self._lock:
            return path in self.dirs

    def is_file(self, path: str) -> bool:
        with self._lock:
            return path in self.files

    def mkdir_p(self, path: str) -> None:
        with self._lock:
            if path in self.files:
                raise NotADirectoryError(path)
            while path not in self.dirs:
                self.dirs.add(path)
                path = posixpath.dirname(path)

    def write(self, path: str, data: bytes) -> None:
        with self._lock:
            if path in self.dirs:
                raise IsADirectoryError(path)
            self.mkdir_p(posixpath.dirname(path))
            self.files[path] = data

    def read(self, path: str) -> bytes:
        with self._lock:
            if path in self.dirs:
                raise IsADirectoryError(path)
            return self.files[path]

    def children(self, path: str) -> list[str]:
        with self._lock:
            prefix = path.rstrip("/") + "/"
            names = {
                p[len(prefix) :].split("/", 1)[0]
                for p in (*self.dirs, *self.files)
                if p.startswith(prefix) and p != prefix
            }
            return sorted(names)


def default_filesystem(hostname: str) -> Filesystem:
    return Filesystem(
        {
            "/etc/hostname": f"{hostname}\n".encode(),
            "/usr/share/nginx/html/index.html": INDEX_HTML,
            "/tmp/.keep": b"",
        }
    )


@dataclass
class Container:
    """One running container of a pod: what exec and port-forward reach."""

    pod: str
    name: str
    fs: Filesystem
    resizes: list[tuple[int, int]] = field(default_factory=list)

    # -- exec ---------------------------------------------------------------------------------

    def run(self, argv: list[str], io_: ExecIO) -> int:
        """Run a command to completion; its exit code, or ExecFailed if it cannot start."""
        if not argv:
            raise ExecFailed("no command given")
        command = _COMMANDS.get(argv[0].rsplit("/", 1)[-1])
        if command is None:
            # containerd's runc message for a missing binary.
            raise ExecFailed(
                "OCI runtime exec failed: exec failed: unable to start container process: "
                f'exec: "{argv[0]}": executable file not found in $PATH: unknown'
            )
        return command(self, argv, io_)

    def attach(self, _argv: list[str], io_: ExecIO) -> int:
        """Attach to the main process, which echoes its stdin like `cat`.

        With stdin, the session ends when the client closes it; without, it streams the
        (quiet) process output until the client goes away, as attaching to a server would.
        """
        if io_.stdin is None:
            io_.hangup.wait()
            return 0
        return _cmd_cat(self, ["cat"], io_)

    # -- port-forward -------------------------------------------------------------------------

    def serve_port(self, port: int) -> Callable[[Reader, Writer], None] | None:
        """The handler of one accepted connection on this port, None if nothing listens."""
        if port == HTTP_PORT:
            return self._http
        if port == ECHO_PORT:
            return _echo
        return None

    def _http(self, inp: Reader, out: Writer) -> None:
        """One request, answered as nginx serves a static root with `gzip_static on`: the file
        under /usr/share/nginx/html (index.html for a directory), or its `.gz` twin with
        `Content-Encoding: gzip` when the client accepts gzip; the type from the extension."""
        request = b""
        while b"\r\n\r\n" not in request and len(request) < 65536:
            chunk = inp.read(65536)
            if not chunk:
                break
            request += chunk
        head = request.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        target = head[0].split(" ")[1] if len(head[0].split(" ")) == 3 else "/"
        path = posixpath.normpath(WEB_ROOT + target.split("?", 1)[0])
        if not path.startswith(WEB_ROOT):
            path = WEB_ROOT
        if self.fs.is_dir(path):
            path = posixpath.join(path, "index.html")
        accepts_gzip = any(
            line.lower().startswith("accept-encoding:") and "gzip" in line.lower()
            for line in head[1:]
        )
        encoding = ""
        if accepts_gzip and self.fs.is_file(path + ".gz"):
            body, status, encoding = self.fs.read(path + ".gz"), "200 OK", "gzip"
        elif self.fs.is_file(path):
            body, status = self.fs.read(path), "200 OK"
        else:
            body, status, path = b"not found\n", "404 Not Found", "/404.html"
        content_type = CONTENT_TYPES.get(posixpath.splitext(path)[1], "application/octet-stream")
        fields = [("Server", "nginx/1.27.0"), ("Content-Type", content_type),
                  ("Content-Length", str(len(body)))]  # fmt: skip
        if encoding:
            fields.append(("Content-Encoding", encoding))
        fields.append(("Connection", "close"))
        lines = "".join(f"{n}: {v}\r\n" for n, v in fields)
        out.write(f"HTTP/1.1 {status}\r\n{lines}\r\n".encode() + body)


def _echo(inp: Reader, out: Writer) -> None:
    while chunk := inp.read(65536):
        out.write(chunk)


# -- commands ----------------------------------------------------------------------------------

Command = Callable[[Container, list[str], ExecIO], int]


def _cmd_echo(_c: Container, argv: list[str], io_: ExecIO) -> int:
    args = argv[1:]
    newline = True
    if args[:1] == ["-n"]:
        newline, args = False, args[1:]
    io_.out.write((" ".join(args) + ("\n" if newline else "")).encode())
    return 0


def _cmd_cat(c: Container, argv: list[str], io_: ExecIO) -> int:
    paths = argv[1:] or ["-"]
    status = 0
    for path in paths:
        if path == "-":
            while chunk := io_.inp.read(65536):
                io_.out.write(chunk)
            continue
        try:
            io_.out.write(c.fs.read(c.fs.resolve(path)))
        except KeyError:
            io_.err.write(f"cat: {path}: No such file or directory\n".encode())
            status = 1
        except IsADirectoryError:
            io_.err.write(f"cat: {path}: Is a directory\n".encode())
            status = 1
    return status


def _cmd_test(c: Container, argv: list[str], _io: ExecIO) -> int:
    args = argv[1:]
    if len(args) == 2 and args[0] in ("-d", "-f", "-e"):
        path = c.fs.resolve(args[1])
        found = {
            "-d": c.fs.is_dir(path),
            "-f": c.fs.is_file(path),
            "-e": c.fs.is_dir(path) or c.fs.is_file(path),
        }[args[0]]
        return 0 if found else 1
    return 2


def _cmd_ls(c: Container, argv: list[str], io_: ExecIO) -> int:
    paths = [a for a in argv[1:] if not a.startswith("-")] or ["."]
    status = 0
    for i, path in enumerate(paths):
        resolved = c.fs.resolve(path)
        if c.fs.is_dir(resolved):
            names = c.fs.children(resolved)
            # Several operands: each directory's listing under a "PATH:" heading.
            heading = ("\n" if i else "") + f"{path}:\n" if len(paths) > 1 else ""
            io_.out.write((heading + "".join(f"{n}\n" for n in names)).encode())
        elif c.fs.is_file(resolved):
            io_.out.write(f"{path}\n".encode())
        else:
            io_.err.write(f"ls: cannot access '{path}': No such file or directory\n".encode())
            status = 2
    return status


def _cmd_mkdir(c: Container, argv: list[str], io_: ExecIO) -> int:
    for path in (a for a in argv[1:] if not a.startswith("-")):
        try:
            c.fs.mkdir_p(c.fs.resolve(path))
        except NotADirectoryError:
            io_.err.write(f"mkdir: cannot create directory '{path}': File exists\n".encode())
            return 1
    return 0


def _cmd_hostname(c: Container, _argv: list[str], io_: ExecIO) -> int:
    io_.out.write(f"{c.pod}\n".encode())
    return 0


def _cmd_sleep(_c: Container, argv: list[str], io_: ExecIO) -> int:
    try:
        seconds = float(argv[1])
    except (IndexError, ValueError):
        io_.err.write(b"sleep: missing operand\n")
        return 1
    time.sleep(min(seconds, MAX_SLEEP))
    return 0


class _ToStderr:
    """`>&2`: stdout written to stderr."""

    def __init__(self, io_: ExecIO) -> None:
        self._io = io_

    def write(self, data: bytes, /) -> None:
        self._io.err.write(data)


def _cmd_sh(c: Container, argv: list[str], io_: ExecIO) -> int:
    """`sh -c SCRIPT`: simple commands joined by `;` or `&&`; `exit N`; `>&2` redirection."""
    if len(argv) < 3 or argv[1] != "-c":
        io_.err.write(b"sh: only 'sh -c SCRIPT' is supported by the emulator\n")
        return 2
    lexer = shlex.shlex(argv[2], posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError as e:
        io_.err.write(f"sh: syntax error: {e}\n".encode())
        return 2
    status = 0
    skip = False
    words: list[str] = []
    for token in [*tokens, ";"]:
        if token not in (";", "&&"):
            words.append(token)
            continue
        if words and not skip:
            outcome = _sh_simple(c, words, io_)
            if isinstance(outcome, _Exit):
                return outcome.code
            status = outcome
        skip = token == "&&" and status != 0
        words = []
    return status


@dataclass(frozen=True)
class _Exit:
    code: int


def _sh_simple(c: Container, words: list[str], io_: ExecIO) -> int | _Exit:
    if words[-2:] in (["1>&", "2"], [">&", "2"]):
        words, io_ = words[:-2], ExecIO(io_.stdin, _ToStderr(io_), io_.stderr)
    if any(w in ("|", "<", ">", "&", "||", ">>") for w in words):
        io_.err.write(b"sh: pipes and redirections other than >&2 are not supported here\n")
        return 2
    if words[0] == "exit":
        return _Exit(int(words[1]) & 0xFF if len(words) > 1 else 0)
    try:
        return c.run(words, io_)
    except ExecFailed:
        io_.err.write(f"sh: {words[0]}: not found\n".encode())
        return 127


def _cmd_tar(c: Container, argv: list[str], io_: ExecIO) -> int:
    """GNU tar's `c`, `x` (and `t`) with `f -`, `-C DIR`; ownership options are accepted."""
    args = argv[1:]
    if args and not args[0].startswith("-"):
        args[0] = "-" + args[0]  # traditional clustered options: `tar cf - x`
    mode, archive, directory = "", "", "/"
    members: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg.startswith("--"):
            if arg.startswith("--directory="):
                directory = c.fs.resolve(arg.split("=", 1)[1])
            elif arg not in ("--no-same-permissions", "--no-same-owner", "--preserve-permissions"):
                io_.err.write(f"tar: unrecognized option '{arg}'\n".encode())
                return 64
            continue
        if not arg.startswith("-") or arg == "-":
            members.append(arg)
            continue
        letters = arg[1:]
        for j, letter in enumerate(letters):
            if letter in "cxt":
                mode = letter
            elif letter in "fC":
                value = letters[j + 1 :]
                if not value:
                    if i >= len(args):
                        io_.err.write(f"tar: option requires an argument -- '{letter}'\n".encode())
                        return 64
                    value, i = args[i], i + 1
                if letter == "f":
                    archive = value
                else:
                    directory = c.fs.resolve(value, directory)
                break
            elif letter not in "mvpo":
                io_.err.write(f"tar: invalid option -- '{letter}'\n".encode())
                return 64
    if archive != "-":
        io_.err.write(b"tar: only 'f -' (stdin/stdout) is supported by the emulator\n")
        return 2
    if mode == "x":
        return _untar(c, directory, io_)
    if mode == "c":
        return _tar(c, directory, members, io_)
    io_.err.write(b"tar: You must specify one of the '-Acdtrux' options\n")
    return 2


class _WriterFile(io.RawIOBase):
    def __init__(self, out: Writer) -> None:
        self._out = out

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._out.write(bytes(data))
        return len(data)


class _ReaderFile(io.RawIOBase):
    def __init__(self, inp: Reader) -> None:
        self._inp = inp

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        return self._inp.read(n if n is not None and n > 0 else 65536)


def _untar(c: Container, directory: str, io_: ExecIO) -> int:
    try:
        with tarfile.open(fileobj=_ReaderFile(io_.inp), mode="r|") as archive:
            for member in archive:
                path = c.fs.resolve(member.name, directory)
                if member.isdir():
                    c.fs.mkdir_p(path)
                elif member.isreg():
                    extracted = archive.extractfile(member)
                    c.fs.write(path, extracted.read() if extracted else b"")
                # Links and devices: skipped; kubectl cp never sends them.
    except tarfile.TarError as e:
        io_.err.write(f"tar: {e}\ntar: Error is not recoverable: exiting now\n".encode())
        return 2
    except (NotADirectoryError, IsADirectoryError) as e:
        io_.err.write(f"tar: {e}: Cannot open: File exists\n".encode())
        return 2
    return 0


def _tar(c: Container, directory: str, members: list[str], io_: ExecIO) -> int:
    if not members:
        io_.err.write(b"tar: Cowardly refusing to create an empty archive\n")
        return 2
    status = 0
    warned = False
    now = time.time()
    with tarfile.open(fileobj=_WriterFile(io_.out), mode="w|", format=tarfile.GNU_FORMAT) as out:

        def add(path: str, name: str) -> None:
            info = tarfile.TarInfo(name)
            info.mtime, info.uname, info.gname = int(now), "root", "root"
            if c.fs.is_dir(path):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                out.addfile(info)
                for child in c.fs.children(path):
                    add(posixpath.join(path, child), f"{name.rstrip('/')}/{child}")
            else:
                data = c.fs.read(path)
                info.size, info.mode = len(data), 0o644
                out.addfile(info, io.BytesIO(data))

        for member in members:
            path = c.fs.resolve(member, directory)
            name = posixpath.normpath(member)
            if name.startswith("/"):
                if not warned:
                    io_.err.write(b"tar: Removing leading `/' from member names\n")
                    warned = True
                name = name.lstrip("/") or "."
            if not (c.fs.is_dir(path) or c.fs.is_file(path)):
                io_.err.write(f"tar: {member}: Cannot stat: No such file or directory\n".encode())
                status = 2
                continue
            add(path, name)
    if status:
        io_.err.write(b"tar: Exiting with failure status due to previous errors\n")
    return status


_COMMANDS: dict[str, Command] = {
    "echo": _cmd_echo,
    "cat": _cmd_cat,
    "true": lambda _c, _a, _io: 0,
    "false": lambda _c, _a, _io: 1,
    "test": _cmd_test,
    "ls": _cmd_ls,
    "mkdir": _cmd_mkdir,
    "sleep": _cmd_sleep,
    "hostname": _cmd_hostname,
    "sh": _cmd_sh,
    "tar": _cmd_tar,
}
