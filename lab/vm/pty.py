"""An interactive shell in the guest on the user's terminal: a PTY over SSH, relayed.

The guest's client key lives only in the lab's memory (lab.vm.ssh), so no external
``ssh`` can log in: the lab relays the terminal itself.  The local terminal goes to raw
mode (every key, Ctrl-C among them, is the guest's), a window-size change is passed on
(SIGWINCH -> ``resize_pty``), and the terminal's mode is restored on every way out.

The guest's bytes reach the terminal as they are: an interactive shell needs its escape
sequences (line editing, colours, full-screen programs), as with any ssh session.  What
the lab itself prints about the guest (its splats) still goes through
``lab.results.text.printable``.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import termios
import tty
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import paramiko

from lab.errors import InfraError

CHUNK = 1 << 15


@contextlib.contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """``fd``'s terminal in raw mode for the block; its mode as it was afterwards, on every
    exit (an exception, Ctrl-C, the guest gone)."""
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def terminal_size(fd: int) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return 80, 24
    return size.columns or 80, size.lines or 24


def interactive(transport: paramiko.Transport, *, stdin_fd: int = 0, stdout_fd: int = 1,
                term: str | None = None, dead: Callable[[], str | None] | None = None) -> int:
    """A login shell in the guest on this terminal until it exits; its exit status (-1 when
    the channel ended without one: the guest died or the connection was lost).  ``dead``
    says why the guest's kernel died (the console's panic): under panic=0 its channel
    stays open, and every key, Ctrl-C too, would go to a guest that reads none."""
    cols, rows = terminal_size(stdout_fd)
    try:
        chan = transport.open_session()
        chan.get_pty(term or os.environ.get("TERM") or "vt100", cols, rows)
        chan.invoke_shell()
    except (OSError, EOFError, paramiko.SSHException) as exc:
        raise InfraError(f"could not open a shell in the guest: {exc}", phase="ssh") from None
    # SIGWINCH wakes the loop through a pipe: paramiko is not called from the handler
    # (it may hold the channel's lock where the signal interrupted it).
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)

    def winch(_signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(OSError):
            os.write(wake_w, b"w")

    previous = signal.signal(signal.SIGWINCH, winch)
    try:
        with raw_mode(stdin_fd):
            _relay(chan, stdin_fd=stdin_fd, stdout_fd=stdout_fd, wake=wake_r, dead=dead)
        return exit_status(chan, dead=dead)
    finally:
        signal.signal(signal.SIGWINCH, previous)
        os.close(wake_r)
        os.close(wake_w)
        chan.close()


def exit_status(chan: paramiko.Channel, *,
                dead: Callable[[], str | None] | None = None) -> int:
    """The channel's exit status once the guest sends it (it may come after the end of its
    output), or -1 when the channel or its connection ends without one, or the guest's
    kernel is dead."""
    while not chan.status_event.wait(0.5):
        if not chan.get_transport().is_active() or (dead is not None and dead()):
            break
    return int(chan.exit_status)


def _relay(chan: paramiko.Channel, *, stdin_fd: int, stdout_fd: int, wake: int,
           dead: Callable[[], str | None] | None = None) -> None:
    """Keys to the channel, the channel's output to the terminal, until the channel ends
    or the guest's kernel is dead."""
    reading_stdin = True
    while True:
        if dead is not None and dead():
            return
        watched: list[Any] = [chan, wake] + ([stdin_fd] if reading_stdin else [])
        ready, _, _ = select.select(watched, [], [], 1.0)
        if wake in ready:
            os.read(wake, 64)
            cols, rows = terminal_size(stdout_fd)
            with contextlib.suppress(paramiko.SSHException, OSError):
                chan.resize_pty(cols, rows)
        if chan in ready or chan.recv_ready():
            try:
                data = chan.recv(CHUNK)
            except (OSError, EOFError, paramiko.SSHException):
                return
            if not data:
                return
            _write_all(stdout_fd, data)
        if stdin_fd in ready:
            keys = os.read(stdin_fd, CHUNK)
            try:
                if keys:
                    chan.sendall(keys)
                else:  # the terminal closed its input: tell the guest, keep its output
                    chan.shutdown_write()
                    reading_stdin = False
            except (OSError, EOFError, paramiko.SSHException):
                return
        if chan.closed or (chan.exit_status_ready() and not chan.recv_ready()):
            return


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
