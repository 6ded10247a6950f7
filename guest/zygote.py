"""A guest interpreter started while the guest boots, to become the agent when asked.

Under TCG the agent's interpreter start and its stdlib imports took 2 s of the
boot's critical path.  guest/boot.sh runs this file (from the host's view of the
checkout, as boot.sh itself) as soon as the cached host root is bound: it listens
on SOCKET, imports the stdlib modules the agent's start needs, and waits.  The
agent's exec channel runs ``handoff`` (guest/handoff.c) first, with the pushed
archive unread on its stdin; it sends the channel's stdin/stdout/stderr, its
umask, directory and environment, and the archive's SHA-256, length and target
directory (from the channel's command line).  This process then takes those,
reads the archive, checks it against the SHA-256 before anything in it is
unpacked (the same check, and the same hello on a mismatch, as the channel's own
shell path in lab/vm/stage.py), unpacks it, imports the agent from there (nothing
of the agent's own comes from here) and runs it; the agent's exit status goes back
to ``handoff``, which exits with it.  A handoff that finds no zygote (taken, or
never started) leaves stdin unread, and the channel unpacks and starts the
interpreter itself: ``python -S zygote.py --unpack SHA256 LENGTH TARGET``, which runs
the same ``unpack`` on its own stdin and then the agent.  That function is the one place
the archive is checked and unpacked, whoever started the interpreter.

Usage: python -S zygote.py SOCKET.  Exit 3: it could not listen (boot.sh then starts
no other); 4: it could not take the channel it was handed (that channel falls back).
python -S zygote.py --unpack SHA256 LENGTH TARGET: exit 1 if the archive differs.
"""

from __future__ import annotations

import time

STARTED = time.monotonic()  # the interpreter is up (the hello's clock, in --unpack mode)

import os  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402

# Only what listening needs is imported before it: the rest is PRELOAD, imported while
# a handoff that comes meanwhile waits in the backlog.

# The stdlib modules that the handoff and the agent's start (its protocol, the
# extension's loader) import, up to its hello; the areas' own imports come with
# their first call, as in an agent the channel started.  tests/test_zygote.py checks
# this list against those imports.
PRELOAD = ("array", "fcntl", "hashlib", "signal", "time", "json", "typing", "errno",
           "importlib")
MISMATCH = b'{"hello": {"error": "agent archive differs after push"}}\n'


class Handoff:
    """What handoff.c sent: the channel's fds and state, and the archive to expect."""

    def __init__(self, fds: list[int], fields: list[str]) -> None:
        self.fds = fds
        self.umask, self.cwd, self.digest, self.target = (fields[0], fields[1], fields[2],
                                                          fields[4])
        self.length = int(fields[3])
        self.env = dict(f.partition("=")[::2] for f in fields[5:] if "=" in f)


def _preload() -> None:
    import contextlib

    for name in PRELOAD:
        with contextlib.suppress(ImportError):  # the agent's own import says what is missing
            __import__(name)


def _receive(conn: socket.socket) -> Handoff:
    """The handoff: fds 0-2, then the fields handoff.c sent."""
    import array

    fds = array.array("i")
    msg, ancdata, flags, _ = conn.recvmsg(1 << 16, socket.CMSG_SPACE(3 * fds.itemsize))
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    try:
        # handoff.c ends the message with a "." field: anything short of it is refused,
        # so a send it gave up on (and fell back from) is never taken.
        fields = [f.decode() for f in msg.split(b"\0")]
        if flags & (socket.MSG_CTRUNC | socket.MSG_TRUNC) or len(fds) != 3 or \
                len(fields) < 7 or fields[-2:] != [".", ""]:
            raise ValueError("a handoff without three fds, its fields and its end")
        return Handoff(list(fds), fields[:-2])
    except (ValueError, UnicodeDecodeError):
        for fd in fds:
            os.close(fd)  # the channel must not stay open on our copies
        raise


def _become(h: Handoff) -> None:
    """Take the channel's place: its fds as 0-2, its directory, umask and environment, a
    session of its own and default signals, as a process the channel exec'd would have."""
    import fcntl
    import signal

    # Copies above 2 first: a received fd may itself be 0, 1 or 2.
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3) for fd in h.fds]
    for fd in h.fds:
        os.close(fd)
    for target, fd in enumerate(high):
        os.dup2(fd, target)  # inheritable, as a channel's fds are
        os.close(fd)
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace",  # noqa: SIM115
                      closefd=False, buffering=1)
    os.umask(int(h.umask, 8))
    os.chdir(h.cwd)
    os.environ.clear()
    os.environ.update(h.env)
    os.setsid()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def _read_exactly(length: int) -> bytes:
    chunks, left = [], length
    while left > 0:
        chunk = os.read(0, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def untar(data: bytes) -> None:
    """Unpack a ustar archive of regular files and directories (what lab/vm/stage.py makes)
    into the current directory, modes and mtimes kept (the .pyc files are checked
    against their sources' mtimes).  Anything else in it is refused."""
    pos = 0
    while pos + 512 <= len(data):
        header = data[pos:pos + 512]
        if header == bytes(512):
            return  # the end-of-archive blocks
        if header[257:262] != b"ustar":
            raise ValueError(f"not a ustar header at byte {pos}")
        name = header[0:100].rstrip(b"\0").decode()
        prefix = header[345:500].rstrip(b"\0").decode()
        path = f"{prefix}/{name}" if prefix else name
        if path.startswith("/") or ".." in path.split("/"):
            raise ValueError(f"member {path!r} leaves the directory")
        mode, size, mtime = (int(header[a:b].strip(b"\0 ") or b"0", 8)
                             for a, b in ((100, 108), (124, 136), (136, 148)))
        kind, pos = header[156:157], pos + 512
        if kind == b"5":
            os.makedirs(path, exist_ok=True)
        elif kind in (b"0", b"\0"):
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode & 0o777)
            try:
                view = memoryview(data)[pos:pos + size]
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            os.utime(path, (mtime, mtime))
            pos += (size + 511) // 512 * 512
        else:
            raise ValueError(f"member {path!r} is of type {kind!r}, not a file or directory")
    raise ValueError("the archive ends without its end-of-archive blocks")


def unpack(digest: str, length: int, target: str) -> bool:
    """Read the archive from stdin, check it, unpack it in ``target`` and move there with
    the agent's stderr in ``agent.stderr``; False (and the mismatch hello) if it differs."""
    import hashlib

    data = _read_exactly(length)
    if hashlib.sha256(data).hexdigest() != digest:
        os.write(1, MISMATCH)
        print(f"agent.tar: FAILED (read {len(data)} of {length} bytes; SHA-256 differs)",
              file=sys.stderr)
        return False
    os.makedirs(target, exist_ok=True)
    os.chdir(target)
    with open("agent.tar", "wb") as f:
        f.write(data)
    untar(data)
    err = os.open("agent.stderr", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(err, 2)
    os.close(err)
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [target] + [p for p in sys.path if p not in ("", here)]
    return True


def _run_agent(started: float, *, zygote: bool) -> int:
    """The agent of the unpacked archive (imported from it: nothing of it comes from here)."""
    from guest.protocol import main as agent_main

    return agent_main(started=started, zygote=zygote)


def _direct(argv: list[str]) -> int:
    """``--unpack SHA256 LENGTH TARGET``: no zygote took the channel; this interpreter,
    started by the channel's shell, checks and unpacks the archive and becomes the agent."""
    if len(argv) != 3 or not argv[1].isdigit():
        print("usage: zygote.py --unpack SHA256 LENGTH TARGET", file=sys.stderr)
        return 2
    if not unpack(argv[0], int(argv[1]), argv[2]):
        return 1
    return _run_agent(STARTED, zygote=False)


def _wait(path: str) -> tuple[socket.socket, Handoff]:
    """Listen on ``path``, preload, and take the first well-formed handoff."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(path):
        os.unlink(path)
    srv.bind(path)
    srv.listen(1)
    _preload()  # a handoff meanwhile waits in the backlog
    while True:
        conn, _ = srv.accept()
        try:
            handoff = _receive(conn)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            print(f"zygote: bad handoff: {exc}", file=sys.stderr)
            conn.close()
            continue
        srv.close()
        # One agent per zygote: the next handoff waits for none (boot.sh wrote the pid).
        for name in (path, f"{path}.pid"):
            if os.path.lexists(name):
                os.unlink(name)
        return conn, handoff


def main(argv: list[str]) -> int:
    if argv[1:2] == ["--unpack"]:
        return _direct(argv[2:])
    if len(argv) != 2:
        print("usage: zygote.py SOCKET", file=sys.stderr)
        return 3
    try:
        conn, handoff = _wait(argv[1])
    except Exception as exc:  # it cannot listen: boot.sh starts no other
        print(f"zygote: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 3
    try:
        _become(handoff)
    except Exception as exc:  # no ack sent: the channel falls back; boot.sh starts another
        print(f"zygote: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 4
    conn.sendall(b"A")  # from here on the channel is ours: no fallback reads its stdin
    status = 1
    try:
        if not unpack(handoff.digest, handoff.length, handoff.target):
            return 1
        status = _run_agent(time.monotonic(), zygote=True)
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.stdout.flush()
        try:
            conn.sendall(bytes([status & 0xFF]))
        except OSError:
            status = status or 1  # handoff.c then says "no status": keep ours nonzero
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
