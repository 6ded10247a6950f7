"""The host side of the guest agent: start it and call it, in a guest or on the host.

The agent runs in the guest as ``python -S -m guest`` (see lab.vm.stage for how
it gets there: pushed on the same channel) and is driven over one SSH exec channel with
JSON lines: ``{"id", "op", "args"}`` -> ``{"id", "ok", "value" | "errno"}``, after a
hello that carries the protocol version.  The same client speaks to the same agent
started on the host's own kernel (``Agent.local``: the quick tier, the plumbing tests):
only the ``Transport`` differs (lab.vm.transport).
"""

from __future__ import annotations

import errno as errno_mod
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from guest import PROTOCOL_VERSION
from lab import proc
from lab.errors import InfraError
from lab.results.text import printable
from lab.vm.ssh import Ssh
from lab.vm.stage import archive, push, remote_dir, stage, start_command, unpack_argv
from lab.vm.timeline import Timeline
from lab.vm.transport import LocalTransport, SshTransport, Transport

log = logging.getLogger("lab.vm.agent")

# The longest reply (one JSON line) read from the agent.  The quick tier's largest is
# 10 KB; a guest's can be a few hundred KB (Debian 7.2's config as text: 298 KB; a window
# of a kernel log ring of 256 KiB as JSON records); past this a guest is flooding the
# channel, and the call fails rather than the host's memory.  Fifty times the largest
# real reply and no more: json.loads of a hostile line costs ~25 times its size (6 MB of
# `[[],[],...]` took 145 MB), so this bounds a guest's claim on the host near 400 MB.
REPLY_CAP = 16 << 20
# How much of a dead agent's stderr its error shows (a traceback's last lines).
STDERR_LINES = 5


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


class AgentReplyTooLong(AgentError):
    """A reply passed ``Agent.reply_cap`` before its end of line: the guest floods the
    channel (or an op returned far more than any test needs)."""


class AgentOpError(Exception):
    """An op raised something other than an errno in the guest (a bad argument, a bug in
    the op): the test is wrong or the agent is, not the machinery; the guest is healthy.
    """

    def __init__(self, op: str, message: str, *, guest_traceback: str = "") -> None:
        super().__init__(f"{op}: {message}")
        self.op = op
        self.guest_traceback = guest_traceback


class Agent:
    """A running agent; ``call()`` performs one op and returns its value.

    Scenarios annotate the fixture with it: ``def test_x(agent: Agent)``.
    """

    def __init__(self, transport: Transport, *, remote: str) -> None:
        self.transport = transport
        self.remote = remote
        self._buf = bytearray()
        self.reply_cap = REPLY_CAP
        self._next_id = 0
        self.hello: dict[str, Any] = {}
        self.last_elapsed_ns = 0
        self.default_timeout = 120.0
        self.broken = ""  # why the channel can no longer be trusted (a call timed out)
        self._slowdown = 1.0
        self._timeline = Timeline()
        # Why the guest is dead though its channel is open (a panic under panic=0 leaves
        # QEMU and the connection up: lab.vm.vm.Vm.alive); checked while a reply is
        # awaited, so a panicked guest fails the call at once, not at its timeout.
        self.dead: Callable[[], str | None] = lambda: None

    @classmethod
    def start(cls, ssh: Ssh, *, cache: Path, slowdown: float = 1.0,
              timeline: Timeline | None = None) -> Agent:
        """Push, verify and start the agent; ``slowdown`` scales every fixed wait (TCG)."""
        agent = cls.launch(ssh, cache=cache, slowdown=slowdown, timeline=timeline)
        agent.handshake()
        return agent

    @classmethod
    def launch(cls, ssh: Ssh, *, cache: Path, slowdown: float = 1.0,
               timeline: Timeline | None = None, staged: Path | None = None) -> Agent:
        """Push the agent and start it, without waiting for it: ``handshake()`` does that,
        so the guest can unpack, verify and start it while the lab does other work.
        ``staged``: the agent ``stage(cache)`` made (staged while the guest booted)."""
        timeline = timeline or Timeline()
        staged = staged or stage(cache)
        data = archive(staged)
        # The guest sees the host's root, so the host's interpreter runs there.
        chan = ssh.channel(start_command(remote_dir(staged), data, handoff=staged / "handoff",
                                         slowdown=slowdown))
        timeline.mark("agent exec")
        push(chan, data)
        timeline.mark("pushed")
        agent = cls(SshTransport(chan), remote=remote_dir(staged))
        agent._slowdown, agent._timeline = slowdown, timeline
        return agent

    @classmethod
    def local(cls, *, cache: Path, workdir: Path) -> Agent:
        """The agent on the host's own kernel: the staged archive, checked and unpacked into
        ``workdir`` by the function the guest uses (guest.zygote.unpack), then started
        there as a child of this process; its stderr in ``workdir``/agent.log."""
        staged = stage(cache)
        data = archive(staged)
        target = workdir / f"agent-{staged.name}"
        piped = proc.converse(unpack_argv(str(target), data), log_path=workdir / "agent.log")
        agent = cls(LocalTransport(piped), remote=str(target))
        try:
            agent.transport.send(data)
            agent.handshake()
        except BaseException:
            agent.close()
            raise
        return agent

    def handshake(self) -> None:
        """Wait for the hello of the agent ``launch`` started and check it."""
        timeline = self._timeline
        line = self._read_line(30.0 * self._slowdown)
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
        self.hello = hello
        clock = hello.get("clock", {})
        for name in ("python", "imports"):
            if name in clock:
                timeline.mark_guest(name, float(clock[name]))
        timeline.mark("hello")

    def _read_line(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        searched = 0  # the buffer holds no newline before this
        while (end := self._buf.find(b"\n", searched)) < 0:
            searched = len(self._buf)
            if searched > self.reply_cap:
                raise AgentReplyTooLong(f"the agent's reply exceeded {self.reply_cap} bytes "
                                        "(Agent.reply_cap) before its end of line")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AgentTimeout(f"no answer from the agent within {timeout:.0f} s")
            try:
                chunk = self.transport.recv(min(remaining, 1.0))
            except OSError as exc:
                raise AgentError(f"agent channel failed: {exc}") from None
            if chunk is None:
                why = self.dead()
                if why:
                    raise AgentError(f"the guest died while the agent was awaited: {why}")
                continue
            if not chunk:
                raise AgentError(f"agent exited (status {self.transport.exit_status()})"
                                 + self._stderr_note())
            self._buf += chunk
        if end > self.reply_cap:
            raise AgentReplyTooLong(f"the agent's reply exceeded {self.reply_cap} bytes "
                                    f"(Agent.reply_cap): {end} bytes")
        line = bytes(self._buf[:end])
        del self._buf[:end + 1]
        return line.decode("utf-8", "replace")

    def _stderr_note(self) -> str:
        """The end of the agent's stderr for a message ("" when it wrote none)."""
        lines = self.transport.stderr_text().strip().splitlines()[-STDERR_LINES:]
        return f"; its stderr ends: {printable(chr(10).join(lines))[-2000:]}" if lines else ""

    def request(self, op: str, /, *, call_timeout: float | None = None,
                **args: Any) -> dict[str, Any]:
        """Send one request and return its reply as the protocol has it (``call`` reads it;
        the plumbing tests read it whole).  Raises AgentError/AgentTimeout only."""
        if self.broken:
            raise AgentError(f"agent unusable since {self.broken}")
        self._next_id += 1
        req = {"id": self._next_id, "op": op, "args": args}
        try:
            try:
                self.transport.send((json.dumps(req) + "\n").encode())
            except OSError as exc:
                raise AgentError(f"cannot send {op} to the agent: {exc}") from None
            reply: dict[str, Any] = json.loads(
                self._read_line(call_timeout or self.default_timeout))
        except AgentTimeout:
            # Its late reply would be taken for the next call's: stop using the channel.
            self.broken = f"{op} timed out"
            raise
        except AgentReplyTooLong:
            # The rest of that reply is still coming: the channel is out of step.
            self.broken = f"{op}'s reply was too long"
            raise
        except KeyboardInterrupt:
            # Ctrl-C: the same, and the fixtures' teardowns that follow fail at once.
            self.broken = f"{op} was interrupted (Ctrl-C)"
            raise
        if reply.get("id") != self._next_id:
            raise AgentError(f"reply for request {reply.get('id')} while waiting for "
                             f"{self._next_id} ({op})")
        self.last_elapsed_ns = int(reply.get("elapsed_ns", 0))
        return reply

    def call(self, op: str, /, *, call_timeout: float | None = None, **args: Any) -> Any:
        """Run ``op`` with ``args`` in the guest and return its value.

        A failed syscall raises GuestOSError with its errno; any other exception in
        the op raises AgentOpError with the guest's traceback.  ``call_timeout``
        (default ``default_timeout``) bounds the wait for the answer; every other
        keyword, ``timeout`` included, is the op's own argument.
        """
        reply = self.request(op, call_timeout=call_timeout, **args)
        if reply.get("ok"):
            return reply.get("value")
        if "errno" in reply:
            raise GuestOSError(reply["errno"], reply.get("message", ""), op=op)
        if "error" in reply:
            raise AgentOpError(op, str(reply["error"]),
                               guest_traceback=str(reply.get("traceback", "")))
        raise AgentError(f"{op}: a reply the protocol does not know: {reply}")

    def errno_of(self, op: str, /, **args: Any) -> str | None:
        """The errno name ``op`` fails with, or None if it succeeds (for spec checks)."""
        try:
            self.call(op, **args)
        except GuestOSError as exc:
            return exc.errno_name
        return None

    def alive(self) -> bool:
        return not self.broken and not self.transport.ended()

    def close(self) -> int | str:
        """Ask the agent to exit and close the transport; the agent's exit status as far as
        the transport knows it ("unknown" when it is not in yet)."""
        try:
            if self.alive():
                self.transport.send(b'{"id": 0, "op": "agent.exit", "args": {}}\n')
        except OSError:
            pass
        return self.transport.close()
