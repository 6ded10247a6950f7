"""A kept guest's door: a unix socket in the run directory, relayed to SSH channels.

`lab run --keep-on-failure` keeps the guest of its first failure (lab.run.keep), and
`lab shell --attach RUN_DIR` gets into it from another terminal.  The guest's client key
lives only in the keeping process's memory (lab.vm.ssh): writing it out would let any
guest of an unisolated run read another's key.  So the keeper listens on a 0600 unix
socket and opens the SSH channel itself (a command's exec, or a PTY shell), relaying the
bytes both ways.

The protocol: the client sends one JSON line, ``{"argv": [...]}`` or ``{"pty": true,
"term": T, "cols": C, "rows": R}``; then both sides send frames, a kind byte, a 4-byte
big-endian length and the payload.  Client to keeper: ``i`` stdin bytes, ``e`` the end
of stdin, ``w`` a window size ("COLS ROWS").  Keeper to client: ``o`` stdout, ``r``
stderr, ``x`` the exit status (text; -1 when the channel ended without one), ``!`` why
the keeper could not open a channel.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import shlex
import socket
import struct
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paramiko

from lab.errors import InfraError, UserError

log = logging.getLogger("lab.vm.attach")

SOCKET = "attach.sock"  # in the run directory
ELSEWHERE = "attach.path"  # names the socket when the run directory's path is too long
UNIX_PATH_MAX = 108  # sun_path's size on Linux, its NUL included
CHUNK = 1 << 15
HEADER_MAX = 1 << 16


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    return kind + struct.pack(">I", len(payload)) + payload


class Frames:
    """Frames out of a byte stream, as its pieces arrive."""

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self.buf += data
        out: list[tuple[bytes, bytes]] = []
        while len(self.buf) >= 5:
            (size,) = struct.unpack(">I", self.buf[1:5])
            if len(self.buf) < 5 + size:
                break
            out.append((self.buf[:1], self.buf[5:5 + size]))
            self.buf = self.buf[5 + size:]
        return out


class Door:
    """The keeper's listening socket: each connection gets its own SSH channel over
    ``transport``, relayed in a thread of its own, until ``close()``."""

    def __init__(self, run_dir: Path, transport: paramiko.Transport) -> None:
        self.run_dir = run_dir
        self.transport = transport
        self.path, self._tmp = _bind_path(run_dir)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Bound in a fresh 0700 directory and made 0600 before anyone can reach it.
        staging = Path(tempfile.mkdtemp(prefix="a-", dir=self.path.parent))
        try:
            self.sock.bind(str(staging / "s"))
            os.chmod(staging / "s", 0o600)
            os.rename(staging / "s", self.path)
        finally:
            os.rmdir(staging)
        if self._tmp is not None:
            (run_dir / ELSEWHERE).write_text(f"{self.path}\n")
        self.sock.listen(4)
        self.sock.settimeout(0.5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="attach", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            threading.Thread(target=self._serve, args=(conn,), name="attach-conn",
                             daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                serve(conn, self.transport)
            except (OSError, EOFError, paramiko.SSHException, ValueError) as exc:
                log.info("an attached session ended: %s", exc)

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        with contextlib.suppress(OSError):
            self.path.unlink()
        with contextlib.suppress(OSError):
            (self.run_dir / ELSEWHERE).unlink()
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.rmdir()


def _bind_path(run_dir: Path) -> tuple[Path, Path | None]:
    """Where the socket goes: RUN_DIR/attach.sock, else (a path too long for a unix
    socket) a short one in a fresh temporary directory (which is returned too)."""
    path = run_dir / SOCKET
    # The staging name beside it is longer by "a-XXXXXXXX/s" minus "attach.sock".
    if len(str(run_dir).encode()) + 16 < UNIX_PATH_MAX:
        return path, None
    tmp = Path(tempfile.mkdtemp(prefix="kl-"))
    return tmp / SOCKET, tmp


def serve(conn: socket.socket, transport: paramiko.Transport) -> None:
    """One attached client: its header, then its channel relayed until the channel ends."""
    header = _header(conn)
    try:
        chan = transport.open_session()
        if header.get("pty"):
            chan.get_pty(str(header.get("term") or "vt100"), int(header.get("cols") or 80),
                         int(header.get("rows") or 24))
            chan.invoke_shell()
        else:
            argv = header.get("argv")
            if not isinstance(argv, list) or not argv:
                raise ValueError(f"a header with neither a command nor a pty: {header}")
            chan.exec_command(shlex.join(str(a) for a in argv))
    except (OSError, EOFError, paramiko.SSHException) as exc:
        conn.sendall(frame(b"!", f"could not open a channel in the guest: {exc}".encode()))
        return
    try:
        _relay(conn, chan)
    finally:
        chan.close()


def _header(conn: socket.socket) -> dict[str, Any]:
    data = b""
    while b"\n" not in data:
        got = conn.recv(1)  # byte by byte: what follows the line is the relay's
        if not got or len(data) > HEADER_MAX:
            raise ValueError("no header")
        data += got
    value = json.loads(data)
    if not isinstance(value, dict):
        raise ValueError("the header is not an object")
    return value


def _relay(conn: socket.socket, chan: paramiko.Channel) -> None:
    frames = Frames()
    while True:
        watched: list[Any] = [chan, conn]
        ready, _, _ = select.select(watched, [], [], 1.0)
        ended = chan.eof_received or chan.closed
        while chan.recv_ready():
            conn.sendall(frame(b"o", chan.recv(CHUNK)))
        while chan.recv_stderr_ready():
            conn.sendall(frame(b"r", chan.recv_stderr(CHUNK)))
        if conn in ready:
            data = conn.recv(CHUNK)
            if not data:  # the client went away: its channel ends
                return
            for kind, payload in frames.feed(data):
                if kind == b"i":
                    chan.sendall(payload)
                elif kind == b"e":
                    chan.shutdown_write()
                elif kind == b"w":
                    cols, rows = (int(x) for x in payload.split())
                    with contextlib.suppress(paramiko.SSHException, OSError):
                        chan.resize_pty(cols, rows)
        if ended and not chan.recv_ready() and not chan.recv_stderr_ready():
            status = _exit_status(chan)
            conn.sendall(frame(b"x", str(status).encode()))
            return


def _exit_status(chan: paramiko.Channel) -> int:
    for _ in range(20):  # it may come just after the end of the output
        if chan.status_event.wait(0.5) or not chan.get_transport().is_active():
            break
    return int(chan.exit_status) if chan.status_event.is_set() else -1


# -- the client (`lab shell --attach`) --------------------------------------------


def socket_of(run_dir: Path) -> Path:
    """The kept guest's socket for ``run_dir``: a UserError when there is none."""
    elsewhere = run_dir / ELSEWHERE
    try:
        path = Path(elsewhere.read_text().strip()) if elsewhere.is_file() else run_dir / SOCKET
    except OSError:
        path = run_dir / SOCKET
    if not path.exists():
        raise UserError(no_guest(run_dir))
    return path


def no_guest(run_dir: Path) -> str:
    return (f"--attach {run_dir}: no kept guest there; give the run directory a `lab run "
            "--keep-on-failure` printed while it waits after a failure")


def connect(run_dir: Path, header: dict[str, Any]) -> socket.socket:
    """A connection to ``run_dir``'s kept guest, its header sent."""
    path = socket_of(run_dir)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:  # a run that ended without removing it (killed), or not a socket
        sock.close()
        raise UserError(no_guest(run_dir)) from None
    sock.sendall(json.dumps(header).encode() + b"\n")
    return sock


def relay(sock: socket.socket, *, stdin_fd: int | None, out: Callable[[bytes], None],
          err: Callable[[bytes], None], wake: int | None = None,
          size: Callable[[], tuple[int, int]] | None = None) -> int:
    """The attached session: ``stdin_fd``'s bytes to the guest (None: none, its end sent
    at once), its output to ``out`` and ``err``; a byte on ``wake`` sends ``size()``.
    The exit status, -1 when there was none; an InfraError when the keeper could not
    open a channel in the guest."""
    frames = Frames()
    if stdin_fd is None:
        sock.sendall(frame(b"e"))
    while True:
        watched: list[Any] = [sock, *([stdin_fd] if stdin_fd is not None else []),
                              *([wake] if wake is not None else [])]
        ready, _, _ = select.select(watched, [], [], 1.0)
        if wake is not None and wake in ready:
            os.read(wake, 64)
            if size is not None:
                cols, rows = size()
                sock.sendall(frame(b"w", f"{cols} {rows}".encode()))
        if stdin_fd is not None and stdin_fd in ready:
            data = os.read(stdin_fd, CHUNK)
            if data:
                sock.sendall(frame(b"i", data))
            else:
                sock.sendall(frame(b"e"))
                stdin_fd = None
        if sock in ready:
            data = sock.recv(CHUNK)
            if not data:
                return -1  # the keeper went away (its run ended)
            for kind, payload in frames.feed(data):
                if kind == b"o":
                    out(payload)
                elif kind == b"r":
                    err(payload)
                elif kind == b"x":
                    return int(payload)
                elif kind == b"!":
                    raise InfraError(payload.decode(errors="replace"), phase="ssh")
