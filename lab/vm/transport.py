"""How the agent client's bytes reach an agent and come back: an SSH exec channel into a
guest, or the pipes of a child on the host's own kernel (lab.vm.agent, ``Agent``)."""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import time
from typing import Protocol

import paramiko

from lab.proc import Piped


class Transport(Protocol):
    """The seam: bytes out, bytes in with a deadline, and the other end's fate."""

    def send(self, data: bytes) -> None:
        """Send all of ``data``; OSError when the other end is gone."""

    def recv(self, timeout: float) -> bytes | None:
        """What arrived within ``timeout`` s: None if nothing, b"" once the agent closed
        its output; OSError when the transport broke."""

    def ended(self) -> bool:
        """The agent exited or the transport was closed."""

    def exit_status(self) -> int | str:
        """The agent's exit status, "unknown" when it is not in (yet)."""

    def close(self) -> int | str:
        """Close this end (idempotent); the exit status as ``exit_status``."""

    def stderr_text(self) -> str:
        """The last of what the agent wrote to its stderr ("" where a log file has it)."""


# The last of the agent's stderr kept (a traceback as it dies; a flood keeps its end).
STDERR_KEPT = 64 << 10


class SshTransport:
    """An SSH exec channel whose command became the agent (lab.vm.stage.start_command).

    Its stderr is read as it comes, the last STDERR_KEPT bytes kept (``stderr_text``):
    unread, it would fill the channel's window (2 MiB) and stop its stdout with it, and
    the agent would look hung (AgentTimeout: a HANG blamed on the kernel).
    """

    def __init__(self, chan: paramiko.Channel) -> None:
        self.chan = chan
        self._stderr = bytearray()

    def send(self, data: bytes) -> None:
        try:
            self.chan.sendall(data)
        except (EOFError, paramiko.SSHException) as exc:
            raise OSError(str(exc) or type(exc).__name__) from None

    def recv(self, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        self.chan.settimeout(0.0)  # never blocks below: the wait is the select's
        while True:
            try:
                self._drain_stderr()
                return self.chan.recv(65536)  # b"" once the agent closed its output
            except TimeoutError:
                pass
            except (EOFError, paramiko.SSHException) as exc:
                raise OSError(str(exc) or type(exc).__name__) from None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            # The channel's fileno is readable when stdout or stderr has data (or ended).
            select.select([self.chan], [], [], remaining)

    def _drain_stderr(self) -> None:
        while self.chan.recv_stderr_ready():
            self._stderr += self.chan.recv_stderr(65536)
            del self._stderr[:-STDERR_KEPT]

    def stderr_text(self) -> str:
        """The last STDERR_KEPT bytes the agent wrote to its stderr so far."""
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            self._drain_stderr()
        return self._stderr.decode("utf-8", "replace")

    def ended(self) -> bool:
        return self.chan.closed or self.chan.exit_status_ready()

    def exit_status(self) -> int | str:
        return self.chan.recv_exit_status() if self.chan.exit_status_ready() else "unknown"

    def close(self) -> int | str:
        status = self.exit_status()
        self.chan.close()
        return status


class LocalTransport:
    """The stdin and stdout of a child of this process (lab.proc.converse)."""

    def __init__(self, piped: Piped) -> None:
        self.piped = piped
        self.pid = piped.proc.pid

    def send(self, data: bytes) -> None:
        self.piped.stdin.write(data)
        self.piped.stdin.flush()

    def recv(self, timeout: float) -> bytes | None:
        fd = self.piped.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], timeout)
        return os.read(fd, 65536) if ready else None

    def ended(self) -> bool:
        return self.piped.stdin.closed or self.piped.proc.poll() is not None

    def exit_status(self) -> int | str:
        # Asked once its output ended: its exit is a moment away, not yet reaped.
        try:
            return self.piped.proc.wait(1.0)
        except subprocess.TimeoutExpired:
            return "unknown"

    def stderr_text(self) -> str:
        return ""  # in the agent's log file (lab.proc.converse)

    def close(self) -> int | str:
        status = self.piped.stop()
        return "unknown" if status is None else status
