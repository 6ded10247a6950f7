"""SSH to the guest with paramiko: a key pair of its own per guest, its host key pinned.

Each VM gets two ed25519 key pairs, made in the lab's process (``KeyPair``): a client key,
whose public half is the guest's only authorized key and whose private half never leaves
the lab's memory, and a host key, written for the guest's sshd (mode 0600).  A guest that
reads another's files or reaches another's sshd therefore holds no key that logs in there,
and the expected host key is known before the first contact and checked strictly on every
connection, not trusted on first use.  Never the user's ~/.ssh.
"""

from __future__ import annotations

import io
import logging
import select
import shlex
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lab import atomic
from lab.errors import InfraError

log = logging.getLogger("lab.vm.ssh")

# While the guest does not look ready (Ssh.connect's ``ready``), one attempt this often.
UNREADY_ATTEMPT_S = 5.0
# The most of a command's stdout (and of its stderr) the lab reads: its commands print
# a few lines (the NVMe probe, a sysrq); more is a guest flooding the channel.
OUTPUT_CAP = 16 << 20


class KeyPair:
    """An ed25519 key pair made in memory (0.1 ms; an ``ssh-keygen`` exec took 10 ms).

    ``pkey`` signs for paramiko; ``public`` is its public half alone, what a peer pins or
    authorizes.  The private half is written nowhere unless ``write_private`` is called,
    which only a guest's host key needs (its sshd reads it from a file).
    """

    def __init__(self) -> None:
        self._key = Ed25519PrivateKey.generate()
        # paramiko loads ed25519 keys only from OpenSSH's private format: a string here.
        self.pkey = paramiko.Ed25519Key(file_obj=io.StringIO(self._openssh().decode()))
        self.public = paramiko.Ed25519Key(data=self.pkey.asbytes())

    def _openssh(self) -> bytes:
        return self._key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.OpenSSH,
                                       serialization.NoEncryption())

    def public_line(self, comment: str = "kernel-lab") -> str:
        """The public half as authorized_keys and .pub files spell it."""
        return f"{self.public.get_name()} {self.public.get_base64()} {comment}\n"

    def write_private(self, path: Path) -> None:
        """The private half at ``path`` in OpenSSH's format, mode 0600 from its first byte
        (mkstemp's), published whole by one rename."""
        with atomic.temp_path(path) as tmp:
            tmp.chmod(0o600)
            tmp.write_bytes(self._openssh())


@dataclass(frozen=True)
class ExecResult:
    status: int
    stdout: str
    stderr: str


class Running:
    """A command started in the guest (``Ssh.start``)."""

    def __init__(self, argv: list[str], stdout: paramiko.ChannelFile,
                 stderr: paramiko.ChannelFile) -> None:
        self.argv, self._stdout, self._stderr = argv, stdout, stderr

    def wait(self, *, cap: int = OUTPUT_CAP) -> ExecResult:
        """Its exit status and output; InfraError when stdout or stderr passes ``cap``
        bytes (the command is then closed, its output unread).

        Both streams are read as they come, each to its own cap: one left unread while
        the other is read to its end fills the channel's window (2 MiB), and the command
        stalls until the timeout instead of its cap saying what happened."""
        chan = self._stdout.channel
        streams = (("stdout", bytearray(), chan.recv_ready, chan.recv),
                   ("stderr", bytearray(), chan.recv_stderr_ready, chan.recv_stderr))
        try:
            while True:
                ended = chan.eof_received or chan.closed  # before the reads: none missed
                got = False
                for name, data, ready, recv in streams:
                    while ready():
                        data += recv(1 << 16)
                        got = True
                        if len(data) > cap:
                            chan.close()
                            raise InfraError(
                                f"`{shlex.join(self.argv)}` wrote more than {cap} bytes to "
                                f"its {name}: the lab reads at most that much", phase="ssh")
                if got:
                    continue
                if ended:
                    break
                # Readable when either stream has data or the channel ended.
                if not select.select([chan], [], [], chan.gettimeout())[0]:
                    raise TimeoutError("timed out")
            status = chan.recv_exit_status()
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise InfraError(f"`{shlex.join(self.argv)}` failed: {exc}", phase="ssh") from None
        out, err = (data.decode("utf-8", "replace") for _, data, _, _ in streams)
        return ExecResult(status, out, err)


class Ssh:
    """A connected session to the guest (one paramiko transport, many channels)."""

    def __init__(self, client: paramiko.SSHClient, *, host: str, port: int) -> None:
        self.client = client
        self.host = host
        self.port = port

    @classmethod
    def connect(
        cls,
        *,
        port: int,
        client_key: paramiko.PKey,
        host_key: paramiko.PKey,
        deadline: float,
        alive: object = None,
        phase: str = "boot",
        log_path: Path | None = None,
        slowdown: float = 1.0,
        ready: Callable[[], bool] | None = None,
        failed: Callable[[], str | None] | None = None,
    ) -> Ssh:
        """Connect as root with ``client_key``, the guest's host key pinned to ``host_key``,
        retrying until ``deadline`` (time.monotonic) while the guest boots.

        ``alive`` is a callable returning False once the VM is gone, so a dead QEMU
        fails fast instead of waiting for the deadline.  ``slowdown`` scales the
        handshake's own timeouts: a slow guest (a debug kernel under TCG on a loaded
        host: tens of seconds per connection, sshd re-executing itself over 9p) needs
        long for its banner, and each attempt given up too early leaves sshd one more
        pre-auth child, until MaxStartups refuses every new one.  A guest whose sshd is
        not listening yet refuses at once, so the longer wait costs a fast boot nothing.

        ``ready`` says when the guest can answer (its network up and sshd listening, as
        the console shows).  Until then an attempt is made only every
        ``UNREADY_ATTEMPT_S``: QEMU's user network accepts on the host at once and
        forwards the SYN to a guest that has no address yet, and the attempt then waits
        for TCP's retransmission (1 s, then 3 s) long after sshd listens.

        ``failed`` returns what the guest said when it gave up on its own boot (no
        network, say): the wait ends at once with that, not at the deadline.
        """
        host = "127.0.0.1"
        last_error = "no attempt"
        auth_failures = 0
        # paramiko logs every refused banner while the guest boots: expected noise.
        logging.getLogger("paramiko").setLevel(logging.CRITICAL)
        last_attempt = -UNREADY_ATTEMPT_S
        while time.monotonic() < deadline:
            if callable(alive) and not alive():
                raise InfraError("QEMU exited before SSH came up", phase=phase, log=log_path)
            reason = failed() if failed is not None else None
            if reason is not None:
                raise InfraError(f"the guest gave up booting: {reason}", phase=phase,
                                 log=log_path)
            if ready is not None and not ready() and \
                    time.monotonic() - last_attempt < UNREADY_ATTEMPT_S:
                time.sleep(0.02)
                continue
            last_attempt = time.monotonic()
            client = paramiko.SSHClient()
            client.get_host_keys().add(f"[{host}]:{port}", host_key.get_name(), host_key)
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            try:
                client.connect(
                    host,
                    port=port,
                    username="root",
                    pkey=client_key,
                    allow_agent=False,
                    look_for_keys=False,
                    timeout=3,
                    banner_timeout=15 * slowdown,
                    auth_timeout=30 * slowdown,
                )
            except paramiko.BadHostKeyException as exc:
                client.close()
                raise InfraError(
                    f"guest host key mismatch on port {port} ({exc}); another VM on this port?",
                    phase=phase,
                    log=log_path,
                ) from None
            except paramiko.AuthenticationException as exc:
                # sshd is up and said no: retrying cannot help beyond a few races.
                client.close()
                auth_failures += 1
                if auth_failures >= 3:
                    raise InfraError(f"the guest's sshd refused its key ({exc}); "
                                     "see sshd's lines in the console log",
                                     phase=phase, log=log_path) from None
                time.sleep(0.5)
                continue
            except (OSError, EOFError, paramiko.SSHException) as exc:
                client.close()
                last_error = f"{type(exc).__name__}: {exc}"
                time.sleep(0.2)
                continue
            transport = client.get_transport()
            assert transport is not None
            transport.set_keepalive(5)
            return cls(client, host=host, port=port)
        raise InfraError(
            f"no SSH on 127.0.0.1:{port} before the boot timeout (last: {last_error})",
            phase=phase,
            log=log_path,
        )

    def run(self, argv: list[str], *, timeout: float = 60.0) -> ExecResult:
        """Run a command in the guest (argv joined with shlex; the guest shell is /bin/sh)."""
        return self.start(argv, timeout=timeout).wait()

    def start(self, argv: list[str], *, timeout: float = 60.0) -> Running:
        """Start a command in the guest and return at once (``wait()`` for its result), so
        other work on this connection can go on while the guest runs it."""
        try:
            _, stdout, stderr = self.client.exec_command(shlex.join(argv), timeout=timeout)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise InfraError(f"`{shlex.join(argv)}` failed: {exc}", phase="ssh") from None
        return Running(argv, stdout, stderr)

    def channel(self, command: str) -> paramiko.Channel:
        """An exec channel running ``command`` (used for the agent's stdin/stdout)."""
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise InfraError("SSH connection lost", phase="ssh")
        chan = transport.open_session()
        chan.exec_command(command)
        return chan

    def sftp(self) -> paramiko.SFTPClient:
        return self.client.open_sftp()

    def close(self) -> None:
        self.client.close()


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (QEMU binds it next)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
