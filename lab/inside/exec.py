"""`lab exec`: the user's own program, run in a run's guest as one test with the lab's verdicts.

A syzkaller C reproducer, a liburing test, a script: pushed into the guest's tmpfs
(lab.inside.guestcmd) of each cell's guest (lab.vm.session.machine_for, what `lab run`
boots), run there under the kernel-log watch (lab.run.watch), and judged as a test:

- exit 0 and nothing in the kernel log: PASS;
- a non-zero exit: FAIL (``exit N``, the output's tail as the excerpt);
- a splat in its window: FAIL, CRASH when it is fatal (panic, BUG, Oops), with its title;
- the guest dying while it runs: CRASH (Machine.diagnose: the console's report);
- still running at ``--timeout``: HANG, with the blocked tasks dumped (sysrq-w).

A ``.c`` file is built on the host (``cc -O2 -pthread``) into the run directory, as
syzkaller builds its C reproducers; the guest runs the host's /usr over 9p, so a
dynamically linked program runs as it does on the host.  The run directory holds what
a run's does (records, console logs, timeline, summary.json) and the program's output
(``exec-CELL.log``); each record's data has the program's SHA-256 and exit status.
Everything the command line says is checked before anything is written.
"""

from __future__ import annotations

import codecs
import hashlib
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lab import proc
from lab.errors import InfraError, UserError
from lab.inside import guestcmd, prepare
from lab.kernel.artifact import Kernel
from lab.kernel.decode import decode_splats
from lab.results import summary as summary_mod
from lab.results.cell import short_label
from lab.results.evidence import Evidence, PhaseOutcome
from lab.results.record import Record, append_phase, append_record
from lab.results.text import printable
from lab.results.verdict import Diagnosis, exit_code, exit_line
from lab.run import watch
from lab.run.cells import Cell, matrix
from lab.run.config import RunConfig
from lab.run.records import record_of
from lab.vm.agent import AgentTimeout
from lab.vm.session import BootCrash, Machine, machine_for

DEFAULT_TIMEOUT = 300.0
MAX_TIMEOUT = 86400.0
TAIL_LINES = 40  # of the program's output: a FAIL's excerpt
BLOCKED_CAP = 64 << 10  # of the console after sysrq-w: a HANG's data
# The program's output log: its first LOG_CAP bytes, and its last TAIL_KEPT (the guest's
# SSH output is capped so, lab.vm.ssh: 16 MiB a stream).
LOG_CAP = 16 << 20
TAIL_KEPT = 64 << 10
SYSRQ_W = "sysrq: Show Blocked State"
# What the program is: an ELF binary, a script with its interpreter, or C to build.
ELF, SCRIPT = b"\x7fELF", b"#!"


class ProgramTimeout(AgentTimeout):
    """The program still ran at --timeout: to Machine.diagnose, a call that hung (HANG,
    the blocked tasks dumped); said without the agent's phase (no agent call hung)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Program:
    """The program to run, as the command line named it."""

    path: Path  # the file given (resolved): the C source for a .c
    args: tuple[str, ...] = ()
    sha256: str = ""  # of the file given: what a bisection pins

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def is_c(self) -> bool:
        return self.path.suffix == ".c"

    @property
    def test(self) -> str:
        """Its test id in the records."""
        return f"exec::{self.name}"

    @property
    def runs_as(self) -> str:
        """The name of what runs in the guest (a .c's binary drops the suffix)."""
        return self.path.stem if self.is_c else self.name


def parse_timeout(text: str | float | None) -> float:
    """``--timeout``'s seconds (the default when not given); UserError when not 1 to a day."""
    if text is None:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 1 <= seconds <= MAX_TIMEOUT:
        raise UserError(f"--timeout {text}: give the seconds the program may run, 1 to "
                        f"{MAX_TIMEOUT:.0f} (default {DEFAULT_TIMEOUT:.0f}); past them it is HANG")
    return seconds


def program_of(rest: list[str]) -> Program:
    """The program and its arguments after ``--``; UserError when it is not one the guest
    can run (missing, unreadable, neither ELF nor ``#!`` nor ``.c``)."""
    if not rest or rest[0] != "--":
        given = f" (got {shlex.join(rest[:2])})" if rest else ""
        raise UserError(f"lab exec needs `-- PROGRAM [ARGS...]` after its options{given}: "
                        "e.g. lab exec --kernel debian:7.2 -- ./repro")
    if len(rest) < 2 or not rest[1]:
        raise UserError("lab exec: no program after `--`; give one: -- ./repro [ARGS...]")
    path = Path(rest[1]).expanduser()
    if not path.is_file():
        what = "a directory" if path.is_dir() else "no such file"
        raise UserError(f"{rest[1]}: {what}; give the program to run (an ELF binary, a #! "
                        "script or a .c file)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{rest[1]}: cannot read it ({exc.strerror}); give a program you "
                        "may read") from None
    if path.suffix != ".c" and not data.startswith((ELF, SCRIPT)):
        raise UserError(f"{rest[1]}: neither an ELF binary, a #! script nor a .c file; give "
                        "one of those (a script needs its #! line)")
    return Program(path.resolve(), tuple(rest[2:]), hashlib.sha256(data).hexdigest())


def build_c(program: Program, into: Path) -> Path:
    """The binary of a C program, built on the host into ``into``; UserError with the
    compiler's first errors when it does not build."""
    out = into / program.runs_as
    argv = ["cc", "-O2", "-pthread", "-o", str(out), str(program.path)]
    try:
        proc.run(argv, phase="exec:cc", log_path=into / "cc.log", timeout=300)
    except proc.ProcessError as exc:
        errors = [ln for ln in exc.tail.splitlines() if "error" in ln][:3] or \
            exc.tail.splitlines()[-3:]
        raise UserError(f"{program.path} does not build with `{shlex.join(argv[:3])}`: "
                        f"{' | '.join(errors)}") from None
    return out


def exec_(config: RunConfig, rest: list[str], *, timeout: str | None, argv: list[str]) -> int:
    """`lab exec`: run the program after ``--`` in each cell's guest; the lab's exit status
    for the verdicts (lab.results.verdict.exit_code)."""

    started = time.monotonic()
    seconds = parse_timeout(timeout)
    program = program_of(rest)
    cells = matrix(config.kernel_specs, config.variants, config.kconfig_add)
    if program.is_c and shutil.which("cc") is None:
        raise UserError(f"{program.path} is C and there is no `cc` on this host; install "
                        "gcc (or give the built program)")
    cache, results = prepare.check(config, cells)
    label = "exec-" + "+".join(short_label(c.spec) for c in cells)
    run_dir = prepare.run_dir(results, label)
    try:
        runnable = build_c(program, run_dir) if program.is_c else program.path
        kernels = [_fetch(cell, cache=cache, run_dir=run_dir) for cell in cells]
        # Each cell's guest, not started: an accelerator that cannot be had is said now.
        machines = [machine_for(kernel, config.guest, cache=cache, run_dir=run_dir,
                                worker="exec" if i == 0 else f"exec{i + 1}",
                                ssh_port=config.ssh_port, say=_say(cell))
                    for i, (cell, kernel) in enumerate(zip(cells, kernels, strict=True))]
    except (UserError, KeyboardInterrupt):
        # Nothing ran: leave no run directory that looks like a run.
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    (run_dir / "command.txt").write_text(f"cd {shlex.quote(str(Path.cwd()))} && "
                                         f"{shlex.join(argv)}\n")
    print(f"kernel-lab: run directory {run_dir}", flush=True)
    verdicts = []
    for cell, machine in zip(cells, machines, strict=True):
        record = run_cell(machine, cell, program, runnable, timeout=seconds, run_dir=run_dir)
        append_record(run_dir, record)
        verdicts.append(record.verdict)
        why = f": {printable(record.reason.splitlines()[0])}" if record.reason else ""
        print(f"kernel-lab: [{cell.label}] {record.verdict} {record.test} "
              f"({record.duration:.1f}s){why}", flush=True)
    summary_mod.summarize(run_dir, wall=round(time.monotonic() - started, 1))
    code = exit_code(verdicts)
    print(f"kernel-lab: {exit_line(code, verdicts)}; {run_dir}", flush=True)
    return code


def _fetch(cell: Cell, *, cache: Path, run_dir: Path) -> Kernel:
    """``cell``'s kernel, fetched or built (before any guest boots)."""
    from lab.kernel.resolve import resolve_kernel

    t = time.monotonic()
    kernel = resolve_kernel(cell.spec, cache=cache, variant=cell.variant)
    append_phase(run_dir, "fetch", time.monotonic() - t, kernel=cell.spec,
                 **({"variant": cell.variant} if cell.variant else {}))
    print(f"kernel-lab: {cell.label} -> {kernel.release} ({time.monotonic() - t:.1f}s)"
          + (f"; {kernel.note}" if kernel.note else ""), flush=True)
    return kernel


def _say(cell: Cell) -> Callable[[str], None]:
    def say(line: str) -> None:
        print(f"kernel-lab: [{cell.label}] {line}", flush=True)
    return say


def run_cell(machine: Machine, cell: Cell, program: Program, runnable: Path, *,
             timeout: float, run_dir: Path) -> Record:
    """Boot ``cell``'s guest, run the program in it, stop the guest: the cell's record."""
    kernel = machine.kernel
    data: dict[str, Any] = {"program": str(program.path), "program_sha256": program.sha256,
                            "args": list(program.args), "timeout": timeout}
    base: dict[str, Any] = {"cell": cell.label, "kernel": kernel.identity(), "data": data}
    t = time.monotonic()
    try:
        try:
            machine.start()
        except BootCrash as exc:
            d = exc.diagnosis
            setup = PhaseOutcome("setup", "failed", d.summary, time.monotonic() - t, "CRASH")
            return record_of(program.test, Evidence(
                phases=(setup,), reason=f"CRASH: {d.summary}", splats=tuple(d.splats),
                excerpt=d.excerpt, **base))
        except InfraError as exc:
            setup = PhaseOutcome("setup", "failed", str(exc), time.monotonic() - t, "INFRA")
            return record_of(program.test, Evidence(phases=(setup,), **base))
        append_phase(run_dir, "boot", time.monotonic() - t, kernel=cell.spec)
        setup = PhaseOutcome("setup", "passed", duration=time.monotonic() - t)
        log_path = run_dir / f"exec-{_safe(cell.label)}.log"
        data["output_log"] = log_path.name
        offset = machine.console_offset()
        try:
            evidence = run_program(machine, program, runnable, timeout=timeout,
                                   log_path=log_path)
        except InfraError as exc:  # pushing it, or marking the kernel log: SSH or the agent
            d = machine.diagnose(exc, console_offset=offset)
            call = PhaseOutcome("call", "failed", d.summary, time.monotonic() - t, d.verdict)
            evidence = Evidence(phases=(call,), reason=f"{d.verdict}: {d.summary}",
                                splats=tuple(d.splats), excerpt=d.excerpt, data=d.data)
        identity = kernel.identity()
        if kernel.config is None and machine.facts is not None:
            identity.update(config_source=machine.facts.source, config_hash=machine.facts.digest)
        return record_of(program.test, Evidence(
            phases=(setup, *evidence.phases), reason=evidence.reason,
            splats=tuple(decode_splats(kernel, evidence.splats)),
            excerpt=evidence.excerpt, data={**data, **evidence.data}, cell=cell.label,
            kernel=identity, accel=machine.accel.to_dict()))
    finally:
        machine.stop()


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "._+-" else "_" for c in label)


class Output:
    """The program's output: into its log (its first LOG_CAP bytes, then at the end a line
    saying what was cut and the last TAIL_KEPT), onto the terminal made printable (as far
    as the log takes it), and its last lines kept for a FAIL's excerpt.  A program that
    prints forever fills no disk: a bisection runs it at every step."""

    def __init__(self, log: IO[bytes], *, echo: bool = True, cap: int = 0) -> None:
        self.log = log
        self.echo = echo
        self.cap = cap or LOG_CAP
        self.written = 0
        self.cut = 0
        self.tail = bytearray()
        self.decoders = {name: codecs.getincrementaldecoder("utf-8")("replace")
                         for name in ("stdout", "stderr")}

    def writer(self, name: str) -> Callable[[bytes], None]:
        terminal = sys.stdout if name == "stdout" else sys.stderr

        def write(data: bytes) -> None:
            self.tail += data
            del self.tail[:-TAIL_KEPT]
            room = max(0, self.cap - self.written)
            kept, self.cut = data[:room], self.cut + len(data) - min(room, len(data))
            if not kept:
                return
            self.written += len(kept)
            self.log.write(kept)
            self.log.flush()
            if self.echo:
                terminal.write(printable(self.decoders[name].decode(kept)))
                if len(kept) < len(data):
                    terminal.write(f"\nkernel-lab: the program's output passed {self.cap} "
                                   "bytes; the rest is cut (its last part is kept in the "
                                   "log)\n")
                terminal.flush()
        return write

    def close(self) -> None:
        """The log's end: what was cut, and the output's last TAIL_KEPT bytes after it."""
        if self.cut:
            self.log.write(f"\n[kernel-lab: {self.cut} bytes of output cut here; the last "
                           f"{len(self.tail)} bytes follow]\n".encode() + bytes(self.tail))
            self.log.flush()

    def last_lines(self) -> str:
        return "\n".join(self.tail.decode("utf-8", "replace").splitlines()[-TAIL_LINES:])


def run_program(machine: Machine, program: Program, runnable: Path, *, timeout: float,
                log_path: Path) -> Evidence:
    """Push the program into the started guest and run it under the kernel-log watch: the
    call phase's evidence (what ``judge`` makes of how it ended)."""
    vm, agent = machine.vm, machine.agent
    assert vm is not None and vm.ssh is not None and agent is not None
    remote = guestcmd.push(vm.ssh, runnable)
    mark, _ = watch.begin(machine, agent, program.test)
    with open(log_path, "wb") as log:
        out = Output(log)
        try:
            ended = guestcmd.run(vm.ssh, [remote, *program.args], timeout=timeout,
                                 stdout=out.writer("stdout"), stderr=out.writer("stderr"),
                                 dead=vm.timeline.dead)
        finally:
            out.close()
    diagnosis, seen = None, None
    if ended.timed_out:
        diagnosis = machine.diagnose(ProgramTimeout(
            f"the program ran past --timeout {timeout:g} s"), console_offset=mark.console_offset)
    elif ended.status is None:
        diagnosis = machine.diagnose(InfraError(ended.lost, phase="exec"),
                                     console_offset=mark.console_offset)
    else:
        try:
            seen = watch.assess(watch.end(agent, mark, program.test), mark, test=program.test)
        except InfraError as exc:  # the guest died or hung after the program ended
            diagnosis = machine.diagnose(exc, console_offset=mark.console_offset)
    data: dict[str, Any] = {"exit_status": ended.status, "seconds": round(ended.seconds, 3)}
    if ended.timed_out:
        console = machine.console_since(mark.console_offset)
        at = console.find(SYSRQ_W)
        if at >= 0:
            data["blocked_tasks"] = console[at:at + BLOCKED_CAP]
    return judge(status=ended.status, seconds=ended.seconds, diagnosis=diagnosis, seen=seen,
                 tail=out.last_lines(), data=data)


def judge(*, status: int | None, seconds: float, diagnosis: Diagnosis | None,
          seen: watch.Assessment | None, tail: str, data: dict[str, Any]) -> Evidence:
    """The call phase of a program that ended with ``status`` (None: it did not), given the
    guest's ``diagnosis`` when it died or hung, else what its kernel-log window showed.

    Worst first: the diagnosis (CRASH, HANG, INFRA); a splat in the window (CRASH when
    fatal, else FAIL) or a new taint (FAIL); a non-zero exit (FAIL, the output's tail
    as the excerpt); else PASS."""
    if diagnosis is not None:
        call = PhaseOutcome("call", "failed", diagnosis.summary, seconds, diagnosis.verdict)
        return Evidence(phases=(call,), reason=f"{diagnosis.verdict}: {diagnosis.summary}",
                        splats=tuple(diagnosis.splats), excerpt=diagnosis.excerpt,
                        data={**data, **diagnosis.data})
    exited = "" if status in (0, None) else describe_exit(status)
    problem = seen.problem() if seen is not None else ""
    if seen is not None and problem:
        first = problem.splitlines()[0]
        hint = "CRASH" if seen.fatal else "FAIL"
        message = first + (f"; the program: {exited}" if exited else "")
        excerpt = "\n".join(f"{s.title}\n{s.excerpt}" for s in seen.splats) or tail
        call = PhaseOutcome("call", "failed", message, seconds, hint)
        return Evidence(phases=(call,), splats=tuple(s.to_dict() for s in seen.splats),
                        excerpt=excerpt, data={**data, "taint": seen.taint_after})
    if exited:
        call = PhaseOutcome("call", "failed", exited, seconds, "FAIL")
        return Evidence(phases=(call,), excerpt=tail, data=data)
    return Evidence(phases=(PhaseOutcome("call", "passed", duration=seconds),), data=data)


def describe_exit(status: int) -> str:
    """``exit N``, with the signal it means when a shell's 128 + N says one ended it."""
    if status > 128:
        try:
            return f"exit {status} ({signal.Signals(status - 128).name}, if a signal ended it)"
        except ValueError:
            pass
    return f"exit {status}"
