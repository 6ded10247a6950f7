"""`lab shell`: the guest a run boots, with a root shell or one command in it.

One cell (a kernel, a variant): the guest is ``machine_for``'s, the one `lab run` boots
for it (accelerator, kernel parameters, NVMe controllers, the agent staged and started),
and it keeps a run directory under --results (console log, timeline, phases, the
kernel log and each splat's excerpt).  With ``-- CMD ARGS`` the command runs as root
over an SSH exec channel, its output streamed as it comes, and `lab shell` exits with
its status; on a terminal without one, an interactive root shell (lab.vm.pty).

The kernel-log watch runs throughout: a thread reads the guest's kernel log through the
agent (``sys.kmsg_read``) and prints a line when a splat appears; at the end the splats
are listed, each with the file its excerpt is in.  A kernel that died takes its agent
with it: the console log is then read for what the watch could not see.
"""

from __future__ import annotations

import codecs
import collections
import dataclasses
import logging
import os
import shlex
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import paramiko

from lab.errors import InfraError, UserError
from lab.inside import guestcmd, prepare
from lab.results import splat
from lab.results.cell import short_label
from lab.results.record import append_phase
from lab.results.text import printable
from lab.run.cells import Cell, matrix
from lab.run.config import RunConfig
from lab.vm import pty
from lab.vm.agent import Agent, AgentOpError
from lab.vm.session import Machine, machine_for

log = logging.getLogger("lab.inside.shell")

# How often the watch reads the kernel log: a splat shows within this of its printing.
POLL_S = 0.5
# The most kernel-log text the watch keeps (the oldest records go first): a guest that
# floods its log must not fill the host's memory.
KEPT_CHARS = 4 << 20
# The status of a command that ended without one (the guest died, the connection was
# lost, or a signal ended it: paramiko drops SSH's exit-signal): ssh's own for an error.
NO_STATUS = 255
CHUNK = 1 << 16


class Notices:
    """The lab's own lines on stderr, "kernel-lab: ..."; in the relay's raw mode a line
    ends in CR LF (the terminal no longer adds the CR)."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.raw = False
        self._lock = threading.Lock()

    def __call__(self, line: str) -> None:
        end = "\r\n" if self.raw else "\n"
        with self._lock:
            self.stream.write(f"kernel-lab: {line}{end}")
            self.stream.flush()


class KernelWatch:
    """The guest's kernel log, read every POLL_S by a thread of its own; a line for each
    splat as it appears.  The agent is this thread's alone until ``finish``."""

    def __init__(self, agent: Agent, *, say: Callable[[str], None],
                 interval: float = POLL_S) -> None:
        self.agent, self.say, self.interval = agent, say, interval
        self.records: list[dict[str, Any]] = []
        self.kept_chars = 0
        self.after = -1
        self.reported: set[tuple[str, str]] = set()
        self.splats: list[splat.Splat] = []
        self.failed = ""  # why the watch stopped early (the agent stopped answering)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kernel-watch", daemon=True)

    def start(self) -> None:
        got = self.agent.call("sys.kmsg_mark", text="kernel-lab: begin shell")
        self.after = int(got["seq"])
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except (InfraError, AgentOpError, OSError) as exc:  # the agent's end ends the watch
                if not self._stop.is_set():
                    self.failed = str(exc)
                    self.say(printable(f"the kernel-log watch stopped: {exc}"))
                return

    def poll(self, **settle: int) -> None:
        """Read what the kernel logged since the last read; say each new splat."""
        new = self.agent.call("sys.kmsg_read", after_seq=self.after, **settle)
        if not new:
            return
        self.after = int(new[-1]["seq"])
        self.records += new
        self.kept_chars += sum(len(r["text"]) + 1 for r in new)
        while self.kept_chars > KEPT_CHARS and len(self.records) > 1:
            self.kept_chars -= len(self.records.pop(0)["text"]) + 1
        found = splat.parse("\n".join(r["text"] for r in self.records))
        for s in found:
            # parse() gives one report per bug (its kind and title): the same bug again
            # is not a new line, and a report read in two parts is one.
            if (s.kind, s.title) not in self.reported:
                self.reported.add((s.kind, s.title))
                self.splats.append(s)
                self.say(printable(f"kernel splat: {s.title}"))
        # A report read whole now replaces the part of it read before.
        latest = {(s.kind, s.title): s for s in found}
        self.splats = [latest.get((s.kind, s.title), s) for s in self.splats]

    def finish(self, *, alive: bool) -> None:
        """Stop the thread; with the guest ``alive``, read the log a last time once it has
        gone quiet (what the command's end left printing)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.agent.default_timeout + 5)
        if alive and not self.failed and not self._thread.is_alive():
            try:
                self.poll(settle_ms=150, max_wait_ms=2000)
            except (InfraError, AgentOpError, OSError) as exc:  # the guest went meanwhile
                self.failed = str(exc)


def _check(opts: RunConfig, command: list[str], *, interactive: bool) -> tuple[Path, Path, Cell]:
    """Everything checked before anything is fetched or booted: (cache, results, cell)."""
    cells = matrix(list(opts.kernel_specs), opts.variants, opts.kconfig_add)
    if len(cells) != 1:
        raise UserError(f"lab shell boots one guest, and these options make {len(cells)} "
                        f"({', '.join(c.label for c in cells)}); give one --kernel and at most "
                        "one --variant")
    if not command and not interactive:
        raise UserError("lab shell without a command needs a terminal (stdin and stdout); "
                        "give the command to run after `--` (lab shell -- uname -r)")
    if opts.guest.dump not in ("auto", "off"):
        raise UserError(f"--dump {opts.guest.dump}: lab shell writes no dump (a guest that "
                        "dies ends the shell); dump with lab exec or lab run")
    cache, results = prepare.check(opts, cells)
    return cache, results, cells[0]


def shell(opts: RunConfig, command: list[str], *, raw: bool = False,
          argv: list[str] | None = None) -> int:
    """`lab shell`: the command's exit status (the shell's, interactively); NO_STATUS when
    it ended without one.  Ctrl-C stops the guest and reaches the caller."""
    from lab.kernel.resolve import resolve_kernel

    interactive = not command and os.isatty(0) and os.isatty(1)
    cache, results, cell = _check(opts, command, interactive=interactive)
    say = Notices()
    started = time.monotonic()
    kernel = resolve_kernel(cell.spec, cache=cache, variant=cell.variant)
    run_dir = prepare.run_dir(results, f"shell-{short_label(cell.spec)}")
    if argv is not None:
        (run_dir / "command.txt").write_text(
            f"cd {shlex.quote(str(Path.cwd()))} && {shlex.join(argv)}\n")
    say(f"run directory {run_dir}")
    # No dump: a guest that dies ends the shell (and `auto` would give a debug kernel
    # panic=0, a dead guest the shell would only wait on).
    guest = dataclasses.replace(opts.guest, dump="off")
    machine = machine_for(kernel, guest, cache=cache, run_dir=run_dir, worker="shell",
                          ssh_port=opts.ssh_port, say=lambda line: say(f"[{cell.label}] {line}"))
    try:
        machine.start()
        append_phase(run_dir, "boot", time.monotonic() - started, kernel=cell.spec)
        assert machine.agent is not None and machine.vm is not None
        watch = KernelWatch(machine.agent, say=say)
        console_offset = machine.console_offset()
        watch.start()
        began = time.monotonic()
        status: int | None = None  # none yet: Ctrl-C or the lab's own failure
        try:
            status = _interact(machine, say=say) if interactive else \
                _run_command(machine, command, raw=raw)
        finally:
            say.raw = False
            alive = _alive(machine, wait=status is not None and status < 0)
            watch.finish(alive=alive)
        append_phase(run_dir, "shell", time.monotonic() - began,
                     command=shlex.join(command) if command else "(interactive)",
                     status=status)
        if status < 0:
            status = NO_STATUS
            say("the command ended without an exit status: "
                + ("the guest died" if not alive else "the connection was lost or a signal "
                   "ended it"))
        _conclude(machine, watch, run_dir=run_dir, console_offset=console_offset, say=say)
        return status
    finally:
        machine.stop()


def _alive(machine: Machine, *, wait: bool) -> bool:
    """Whether the guest is up; with ``wait`` (its command ended without a status), after
    giving a dying kernel's QEMU the moment it takes to exit."""
    vm = machine.vm
    deadline = time.monotonic() + (3 * machine.cfg.slowdown if wait else 0)
    while vm is not None and vm.alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    return vm is not None and vm.alive()


def _interact(machine: Machine, *, say: Notices) -> int:
    assert machine.vm is not None and machine.vm.ssh is not None
    transport = machine.vm.ssh.client.get_transport()
    if transport is None or not transport.is_active():
        raise InfraError("SSH connection lost", phase="ssh")
    say("a root shell in the guest; `exit` ends it and stops the guest")
    say.raw = True
    return pty.interactive(transport, dead=machine.vm.timeline.dead)


def _run_command(machine: Machine, command: list[str], *, raw: bool) -> int:
    """Run ``command`` (an argv, quoted for the guest's shell) and stream its output; its
    exit status (128 + N when a signal ended it), or -1 when it ended with none (the
    channel was lost, or the console says the kernel died: under --dump's panic=0 the
    channel of a dead guest stays open)."""
    vm = machine.vm
    assert vm is not None and vm.ssh is not None
    out = Sink(sys.stdout.buffer, raw=raw)
    err = Sink(sys.stderr.buffer, raw=raw)
    try:
        ended = guestcmd.run(
            vm.ssh, command, timeout=float("inf"), stdout=out.write, stderr=err.write,
            cwd=None, dead=vm.timeline.dead,
            # A terminal's keys without a pty would not be a terminal's: none.  A file or
            # a pipe is the command's (lab shell -- sh -s < script).
            stdin=None if os.isatty(0) else _feed)
    finally:
        out.write(b"", final=True)
        err.write(b"", final=True)
    if ended.status is None:
        log.info("the command ended without an exit status: %s", ended.lost)
        return -1
    return ended.status


def _feed(chan: paramiko.Channel) -> None:
    """Our stdin to the command's, then its end; a command that has ended takes no more."""
    try:
        while chunk := os.read(0, CHUNK):
            chan.sendall(chunk)
        chan.shutdown_write()
    except (OSError, EOFError, paramiko.SSHException) as exc:
        log.debug("stdin to the guest ended: %s", exc)


class Sink:
    """Where a stream of the command's output goes.  To a terminal its control characters
    are spelled out (lab.results.text.printable), unless --raw: the output is the user's,
    but it comes from a guest whose kernel is under test, and an escape sequence in it
    would act on the user's terminal.  To a file or a pipe it goes as it came: the user
    asked for those bytes, and what reads them is theirs to choose."""

    def __init__(self, stream: BinaryIO, *, raw: bool) -> None:
        self.stream = stream
        self.escape = not raw and stream.isatty()
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def write(self, data: bytes, *, final: bool = False) -> None:
        if self.escape:
            data = printable(self.decoder.decode(data, final)).encode()
        if data:
            self.stream.write(data)
            self.stream.flush()


def _conclude(machine: Machine, watch: KernelWatch, *, run_dir: Path, console_offset: int,
              say: Callable[[str], None]) -> None:
    """The kernel log kept, and the splats listed with the file of each excerpt; the
    console adds what the watch could not read (a kernel that died)."""
    (run_dir / "kmsg.log").write_text("".join(f"{r['text']}\n" for r in watch.records))
    found = list(watch.splats)
    titles = collections.Counter(s.title for s in found)
    for s in splat.parse(machine.console_since(console_offset)):
        if titles[s.title] > 0:
            titles[s.title] -= 1
        else:
            found.append(s)
            say(printable(f"kernel splat (console): {s.title}"))
    if not found:
        say("no kernel splat")
        return
    say(f"{len(found)} kernel splat{'s' if len(found) > 1 else ''}:")
    for n, s in enumerate(found, 1):
        path = run_dir / f"splat-{n}.txt"
        path.write_text(f"{s.title}\n\n{s.excerpt}\n")
        say(printable(f"  {s.title}  ({path})"))

