"""`lab shell --attach RUN_DIR`: into the guest a `lab run --keep-on-failure` keeps.

The keeping run holds the guest's key and relays (lab.vm.attach); this is the other end:
one command (its output to a terminal escaped as `lab shell`'s is, its exit status
ours), or on a terminal an interactive shell in raw mode with window-size changes passed
on.  No guest is booted or stopped here: the run's Ctrl-C ends it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from lab.errors import UserError
from lab.inside.shell import NO_STATUS, Sink
from lab.vm import attach as door
from lab.vm import pty


def _size() -> tuple[int, int]:
    return pty.terminal_size(1)


def attach(run_dir: Path, command: list[str], *, raw: bool = False) -> int:
    """The command's exit status (the shell's, interactively); NO_STATUS when the session
    ended without one (the run ended, the guest died)."""
    if not run_dir.is_dir():
        raise UserError(door.no_guest(run_dir))
    interactive = not command and os.isatty(0) and os.isatty(1)
    if not command and not interactive:
        raise UserError("lab shell --attach without a command needs a terminal (stdin and "
                        "stdout); give the command to run after `--` (lab shell --attach "
                        "RUN_DIR -- uname -r)")
    if not interactive:
        out, err = Sink(sys.stdout.buffer, raw=raw), Sink(sys.stderr.buffer, raw=raw)
        with door.connect(run_dir, {"argv": command}) as sock:
            status = door.relay(sock, stdin_fd=None if os.isatty(0) else 0,
                                out=out.write, err=err.write)
        out.write(b"", final=True)
        err.write(b"", final=True)
        return NO_STATUS if status < 0 else status
    cols, rows = _size()
    header = {"pty": True, "term": os.environ.get("TERM") or "vt100", "cols": cols,
              "rows": rows}
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)

    def winch(_signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(OSError):
            os.write(wake_w, b"w")

    def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(1, view):]

    previous = signal.signal(signal.SIGWINCH, winch)
    try:
        with door.connect(run_dir, header) as sock, pty.raw_mode(0):
            status = door.relay(sock, stdin_fd=0, out=write, err=write, wake=wake_r,
                                size=_size)
    finally:
        signal.signal(signal.SIGWINCH, previous)
        os.close(wake_r)
        os.close(wake_w)
    return NO_STATUS if status < 0 else status
