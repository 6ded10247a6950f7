"""A file pushed into the guest, and a command run there with its output streamed as it comes.

`lab exec` (and `lab shell -- CMD`) run the user's own program in the guest a run
boots.  The program is pushed with SFTP into the guest's tmpfs (``EXEC_DIR``, under
the agent's REMOTE_BASE), never onto the 9p tree of the host the guest reads.  Its
output is handed on chunk by chunk, with no cap (the caller writes it to a log and the
terminal), and the wait ends at the exit status, when the channel is lost (the guest
died, SSH broke), when the console says the kernel died (under ``panic=0`` QEMU and its
network outlive a panic, and the channel would stay open) or at a deadline (the
caller's HANG): ``Ended`` says which.
"""

from __future__ import annotations

import select
import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paramiko

from lab.errors import InfraError
from lab.vm.ssh import Ssh
from lab.vm.stage import REMOTE_BASE

EXEC_DIR = f"{REMOTE_BASE}/exec"
# How long a wait for output sleeps at most before it looks at the deadline again.
POLL_S = 0.5


@dataclass(frozen=True)
class Ended:
    """How a command in the guest ended."""

    status: int | None  # its exit status (128 + N: a signal ended it); None: see below
    timed_out: bool  # still running at the deadline
    lost: str  # why no status came though it did not time out ("": it came)
    seconds: float


def push(ssh: Ssh, local: Path, *, remote_dir: str = EXEC_DIR) -> str:
    """``local`` copied to ``remote_dir`` in the guest (mode 0755); its path there."""
    remote = f"{remote_dir}/{local.name}"
    try:
        sftp = ssh.sftp()
        try:
            try:
                sftp.stat(remote_dir)
            except OSError:
                sftp.mkdir(remote_dir, 0o700)
            sftp.put(str(local), remote)
            sftp.chmod(remote, 0o755)
        finally:
            sftp.close()
    except (OSError, EOFError, paramiko.SSHException) as exc:
        raise InfraError(f"pushing {local} to the guest's {remote} failed: {exc}",
                         phase="push") from None
    return remote


def command_line(argv: list[str], *, cwd: str | None = EXEC_DIR) -> str:
    """The shell line that runs ``argv`` (in ``cwd``, else root's home) and exits with its
    status.

    Not ``exec``: the shell waits and says 128 + N for a program a signal ended, where
    SSH's exit-signal would leave no status at all (and look like a lost guest)."""
    line = f"{shlex.join(argv)}; exit $?"
    return line if cwd is None else f"cd {shlex.quote(cwd)} && {line}"


def run(ssh: Ssh, argv: list[str], *, timeout: float,
        stdout: Callable[[bytes], None], stderr: Callable[[bytes], None],
        cwd: str | None = EXEC_DIR, dead: Callable[[], str | None] | None = None,
        stdin: Callable[[paramiko.Channel], None] | None = None) -> Ended:
    """Run ``argv`` in the guest, each chunk of its output handed on as it comes, until it
    exits, its channel is lost, ``dead()`` says why the guest's kernel died, or
    ``timeout`` seconds pass (the command is left running: the caller diagnoses a guest
    that may be hung, then stops it).  Its stdin is ended at once, so a program that
    reads it sees end of file, not a HANG; ``stdin``, when given, feeds it instead (in a
    thread of its own, which ends it)."""
    started = time.monotonic()
    deadline = started + timeout
    chan = ssh.channel(command_line(argv, cwd=cwd))
    chan.settimeout(POLL_S)
    if stdin is None:
        chan.shutdown_write()
    else:
        threading.Thread(target=stdin, args=(chan,), name="stdin", daemon=True).start()

    def drain() -> bool:
        got = False
        while chan.recv_ready():
            stdout(chan.recv(1 << 16))
            got = True
        while chan.recv_stderr_ready():
            stderr(chan.recv_stderr(1 << 16))
            got = True
        return got

    def ended(status: int | None, *, timed_out: bool = False, lost: str = "") -> Ended:
        if not timed_out:  # a hung one stays as it is for the diagnosis (sysrq-w)
            chan.close()
        return Ended(status, timed_out, lost, time.monotonic() - started)

    try:
        while True:
            if drain():
                continue
            if chan.exit_status_ready():
                drain()
                status = chan.recv_exit_status()
                # paramiko's -1: the channel closed with none (the shell always says one).
                if status < 0:
                    return ended(None, lost="the SSH channel closed with no exit status")
                return ended(status)
            transport = chan.get_transport()
            if chan.closed or transport is None or not transport.is_active():
                drain()
                return ended(None, lost="the SSH channel closed with no exit status")
            why = dead() if dead is not None else None
            if why:
                drain()
                return ended(None, lost=why)
            left = deadline - time.monotonic()
            if left <= 0:
                return ended(None, timed_out=True)
            select.select([chan], [], [], min(POLL_S, left))
    except (OSError, EOFError, paramiko.SSHException) as exc:
        return ended(None, lost=f"the SSH channel failed: {exc}")
    except BaseException:
        chan.close()
        raise
