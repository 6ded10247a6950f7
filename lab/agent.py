"""The host side of the guest agent: stage it, push it, start it, call it.

The agent (``guest/``) is staged once per source hash into the cache, with
its cffi extension compiled on the host (the guest runs the host's Python
from the read-only 9p root, so the same build loads there and costs no
compile time under TCG).  It is pushed over SFTP into a tmpfs in the guest,
verified by SHA-256, and driven over one SSH exec channel with JSON lines.
"""

from __future__ import annotations

import contextlib
import errno as errno_mod
import hashlib
import json
import logging
import os
import shutil
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import paramiko

from lab import proc
from lab.errors import InfraError
from lab.ssh import Ssh

log = logging.getLogger("lab.agent")

PROTOCOL_VERSION = 1
REPO = Path(__file__).resolve().parent.parent
GUEST_SRC = REPO / "guest"
REMOTE_BASE = "/run/kernel-lab"  # a tmpfs mounted by guest/boot.sh


class GuestOSError(OSError):
    """A syscall in the guest failed; ``errno`` is the number, ``errno_name`` the name."""

    def __init__(self, errno_name: str, message: str, *, op: str) -> None:
        number = getattr(errno_mod, errno_name, 0)
        super().__init__(number, f"{op}: {message} [{errno_name}]")
        self.errno_name = errno_name
        self.op = op


class AgentError(InfraError):
    """The agent broke the protocol, died or did not answer in time."""

    def __init__(self, message: str) -> None:
        super().__init__(message, phase="agent")


class AgentTimeout(AgentError):
    """A call did not return in time: the guest may be hung in the kernel."""


def _source_files() -> list[Path]:
    return sorted(
        p for p in GUEST_SRC.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".so"
    )


def source_hash() -> str:
    """Identity of the agent build: its sources and the interpreter that runs it."""
    h = hashlib.sha256()
    h.update(sys.version.encode())
    for path in _source_files():
        h.update(str(path.relative_to(GUEST_SRC)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def stage(cache: Path) -> Path:
    """The staged agent (``agent.tar`` and its ``MANIFEST``), cached by source hash.

    The archive holds ``guest/`` with the built extension and a copy of cffi's
    ``_cffi_backend``, so the guest's Python can start with ``-S``: no site
    processing, whose .pth files (editable installs) cost seconds under TCG.
    """
    final = cache / "agent" / source_hash()
    if (final / "MANIFEST").exists():
        return final
    tmp = final.with_name(f".tmp-{final.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tree = tmp / "tree"
        pkg = tree / "guest"
        for path in _source_files():
            dest = pkg / path.relative_to(GUEST_SRC)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
        build = tmp / "build"
        proc.run(
            [sys.executable, "-m", "guest.build_ffi", "--out", str(build)],
            phase="agent build",
            log_path=cache / "agent" / "build.log",
            cwd=REPO,
            timeout=300,
        )
        built = list(build.glob("_labsys*.so"))
        if not built:
            raise InfraError("the cffi build produced no _labsys extension",
                             phase="agent build", log=cache / "agent" / "build.log")
        for so in built:
            shutil.copy2(so, pkg / so.name)
        import _cffi_backend  # the runtime half of cffi, needed by the extension

        shutil.copy2(str(_cffi_backend.__file__), tree / Path(str(_cffi_backend.__file__)).name)
        files = sorted(p for p in tree.rglob("*") if p.is_file())
        manifest = "".join(
            f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(tree)}\n"
            for p in files
        )
        with tarfile.open(tmp / "agent.tar", "w") as tar:
            for p in files:
                tar.add(p, arcname=str(p.relative_to(tree)))
        (tmp / "MANIFEST").write_text(manifest)
        shutil.rmtree(tree)
        shutil.rmtree(build)
        try:
            tmp.rename(final)
        except OSError:  # another worker published it first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def push(ssh: Ssh, staged: Path) -> str:
    """SFTP the archive and its manifest into the guest's tmpfs; returns the directory."""
    remote = f"{REMOTE_BASE}/agent-{staged.name}"
    sftp = ssh.sftp()
    try:
        with contextlib.suppress(OSError):  # exists already (a second agent on this VM)
            sftp.mkdir(remote)
        for name in ("agent.tar", "MANIFEST"):
            sftp.put(str(staged / name), f"{remote}/{name}")
    finally:
        sftp.close()
    return remote


def start_command(remote: str) -> str:
    """Unpack, verify every file against the manifest, then become the agent.

    One exec does all three, so pushing costs one SFTP session and one channel;
    a checksum mismatch ends the channel with sha256sum's complaint instead of
    a hello.
    """
    return (
        f"cd {remote} && tar -xf agent.tar && "
        f"sha256sum --quiet --strict -c MANIFEST >agent.verify 2>&1 || "
        f"{{ echo '{{\"hello\": {{\"error\": \"agent files differ after push\"}}}}'; "
        f"cat agent.verify >&2; exit 1; }}; "
        f"exec {sys.executable} -S -m guest 2>>agent.stderr"
    )


class Agent:
    """A running agent in the guest; ``call()`` performs one op and returns its value."""

    def __init__(self, chan: paramiko.Channel, *, remote: str) -> None:
        self.chan = chan
        self.remote = remote
        self._buf = b""
        self._next_id = 0
        self.hello: dict[str, Any] = {}
        self.last_elapsed_ns = 0
        self.default_timeout = 120.0
        self.broken = ""  # why the channel can no longer be trusted (a call timed out)

    @classmethod
    def start(cls, ssh: Ssh, *, cache: Path, timeout: float = 60.0) -> Agent:
        remote = push(ssh, stage(cache))
        # The guest sees the host's root, so the host's interpreter runs there.
        chan = ssh.channel(start_command(remote))
        agent = cls(chan, remote=remote)
        line = agent._read_line(timeout)
        hello = json.loads(line).get("hello")
        if not isinstance(hello, dict):
            raise AgentError(f"agent did not say hello: {line[:200]!r}")
        if hello.get("error"):
            raise AgentError(f"agent failed to start: {hello['error']}")
        if hello.get("protocol") != PROTOCOL_VERSION:
            raise AgentError(
                f"agent protocol mismatch: the lab speaks {PROTOCOL_VERSION}, "
                f"the guest agent {hello.get('protocol')}"
            )
        agent.hello = hello
        return agent

    def _read_line(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AgentTimeout(f"no answer from the agent within {timeout:.0f} s")
            self.chan.settimeout(min(remaining, 1.0))
            try:
                chunk = self.chan.recv(65536)
            except TimeoutError:
                continue
            except (OSError, EOFError, paramiko.SSHException) as exc:
                raise AgentError(f"agent channel failed: {exc}") from None
            if not chunk:
                raise AgentError(f"agent exited (status {self._exit_status()})")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode("utf-8", "replace")

    def _exit_status(self) -> int | str:
        if self.chan.exit_status_ready():
            return self.chan.recv_exit_status()
        return "unknown"

    def call(self, op: str, /, *, timeout: float | None = None, **args: Any) -> Any:
        """Run ``op`` in the guest; a failed syscall raises GuestOSError with its errno."""
        if self.broken:
            raise AgentError(f"agent unusable since {self.broken}")
        self._next_id += 1
        req = {"id": self._next_id, "op": op, "args": args}
        try:
            self.chan.sendall((json.dumps(req) + "\n").encode())
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise AgentError(f"cannot send {op} to the agent: {exc}") from None
        try:
            reply = json.loads(self._read_line(timeout or self.default_timeout))
        except AgentTimeout:
            # Its late reply would be taken for the next call's: stop using the channel.
            self.broken = f"{op} timed out"
            raise
        if reply.get("id") != self._next_id:
            raise AgentError(f"reply for request {reply.get('id')} while waiting for "
                             f"{self._next_id} ({op})")
        self.last_elapsed_ns = int(reply.get("elapsed_ns", 0))
        if reply.get("ok"):
            return reply.get("value")
        if "errno" in reply:
            raise GuestOSError(reply["errno"], reply.get("message", ""), op=op)
        raise AgentError(f"{op}: {reply.get('error', reply)}")

    def errno_of(self, op: str, /, **args: Any) -> str | None:
        """The errno name ``op`` fails with, or None if it succeeds (for spec checks)."""
        try:
            self.call(op, **args)
        except GuestOSError as exc:
            return exc.errno_name
        return None

    def alive(self) -> bool:
        return not self.broken and not self.chan.closed and not self.chan.exit_status_ready()

    def close(self) -> None:
        try:
            if self.alive():
                self.chan.sendall(b'{"id": 0, "op": "agent.exit", "args": {}}\n')
        except (OSError, EOFError, paramiko.SSHException):
            pass
        self.chan.close()
