"""One kernel's guest on one worker: the VM and its agent, replaced after a crash or hang.

A lab that tests races will crash kernels.  When a test kills the kernel or a
call never returns, ``diagnose()`` says what happened from the evidence that
is left (QEMU's exit, the console since the test began, the hung-task dump
that sysrq-w adds), the machine is marked for replacement, and the next test
gets a freshly booted guest.  A per-run limit stops a crash loop.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from lab.errors import InfraError
from lab.kernel.artifact import Kernel, file_sha256
from lab.kernel.facts import ConfigFacts
from lab.results import nvme, splat
from lab.results.cell import PREBUILT
from lab.results.record import append_timeline
from lab.results.verdict import Diagnosis
from lab.vm import gdbstub
from lab.vm.accel import Accel, choose
from lab.vm.agent import Agent, AgentError, AgentTimeout
from lab.vm.slots import CpuSlots, Wait
from lab.vm.ssh import Ssh
from lab.vm.stage import stage
from lab.vm.vm import Vm
from lab.vm.vmconfig import DEFAULT_KERNEL_ARGS, VmConfig, console_cap

if TYPE_CHECKING:
    from lab.options import GuestOptions

log = logging.getLogger("lab.vm.session")

EXCERPT_LINES = 60
# An int3 trap in kernel text early in boot: the kernel was patching its own code
# (static keys, alternatives) while another vCPU ran it (seen under multi-threaded TCG).
TEXT_PATCHING_OOPS = "Oops: int3"


class RebootLimit(InfraError):
    """Too many replacements in one run: probably a crash loop.

    ``kernel``: every replacement followed the kernel's own crash or hang, so the loop
    is the kernel's finding (the run exits 1), not the machinery's (3).
    """

    kernel = False  # ImageChanged too: a changed image is never the kernel's doing

    def __init__(self, message: str, *, kernel: bool = False) -> None:
        super().__init__(message, phase="recovery")
        self.kernel = kernel


class ImageChanged(RebootLimit):
    """A kernel image given by path changed since the run resolved it.

    Refused rather than booted with a note: every record of the run names the image
    that was resolved (its SHA-256, the reproducers' pin), and a guest booted from
    another file would make the rest of them false.  A RebootLimit, so the run stops
    where a crash loop stops it; the records of what ran stay.
    """

    def __init__(self, message: str) -> None:
        InfraError.__init__(self, message, phase="boot")


class BootCrash(Exception):
    """The kernel crashed while booting: the kernel's fault, not the machinery's.

    Not an InfraError: every test that would have run on this kernel is a CRASH
    with the console's report, so that bisection can tell "this commit's kernel
    does not boot" from "the lab broke".
    """

    def __init__(self, diagnosis: Diagnosis) -> None:
        super().__init__(f"the kernel crashed during boot: {diagnosis.summary}")
        self.diagnosis = diagnosis


@dataclasses.dataclass(frozen=True)
class Closed:
    """The last test window that closed cleanly on a guest: what the kernel prints after
    it, until the next window opens, is that test's (its deferred work)."""

    test: str
    seq: int  # the last kernel-log record the window read
    taint: int  # the taint mask as it closed
    console_offset: int  # the console's size as it closed
    opened_us: int  # the window's begin marker's kernel timestamp


class Machine:
    """The guest for ``kernel`` on this worker; ``ensure()`` before each test.

    ``say`` prints a progress line for the user: the wait for a CPU slot, the boot
    starting (the accelerator and why), and the guest up with its milestones.
    """

    def __init__(self, kernel: Kernel, *, run_dir: Path, cache: Path, config: VmConfig,
                 name: str, call_timeout: float, max_reboots: int,
                 accel: Accel | None = None,
                 say: Callable[[str], None] | None = None) -> None:
        self.kernel = kernel
        self.run_dir = run_dir
        self.cache = cache
        self.cfg = config
        # What the guest boots with and why (every record carries it); a retry after a
        # text-patching oops changes it.
        self.accel = accel or Accel(config.accel, f"asked for {config.accel}")
        self.say = say or (lambda line: None)
        self.name = name
        self.call_timeout = call_timeout
        self.max_reboots = max_reboots
        self.vm: Vm | None = None
        self.agent: Agent | None = None
        self.boots = 0
        self.replace_reason = ""
        # Why the guest is to be replaced: the kernel crashed or hung ("kernel"), a
        # detector went quiet and a fresh boot brings it back ("planned", which the
        # reboot limit does not count: the guest is healthy), else unknown ("").
        self.replace_cause = ""
        self.recoveries: list[str] = []  # the cause of each counted replacement
        # A detector off for the rest of this boot in a guest that was kept (lockdep
        # after a KASAN report under kasan_multi_shot); every later record says so.
        self.detectors_note = ""
        self.boot_seconds = 0.0
        self.agent_seconds = 0.0
        self.dumps = 0  # the guest's memory written after a CRASH or HANG (``_dump``)
        # A boot keeps the guest's vCPUs busy: it holds one of the host's CPU slots.
        self.slots = CpuSlots.for_guest(config.cpus)
        self.slot_wait = Wait(0.0, held=False)  # the last boot's (not in boot_seconds)
        # What is known of the kernel's config: its file, else learnt from the guest.
        self.facts: ConfigFacts | None = (
            ConfigFacts.from_text(kernel.config.read_text(errors="replace"),
                                  source=kernel.config_source or f"file:{kernel.config}")
            if kernel.config is not None and kernel.config.is_file() else None)
        self.last_test = ""  # the test that ran last on this machine (for attribution)
        self.boot_note = ""  # how booting differed from what was asked (a retry)
        # The kernel log between tests (lab.run.guard): the window whose aftermath is not
        # judged yet, this boot's window starts (kernel time, test) for charging a hung
        # task, and the splat titles some window or diagnosis saw (the console backstop).
        self.closed: Closed | None = None
        self.windows: list[tuple[int, str]] = []
        self.seen: list[str] = []
        self.flood_charged = False  # a window said this guest flooded its console
        # Called with the reason before a guest is replaced (its log read a last time).
        self.on_replace: Callable[[Machine, str], None] | None = None

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> None:
        """Boot a guest and start its agent; BootCrash if the kernel died on the way.

        A boot that oopses in text patching under multi-threaded TCG is booted again
        single-threaded, once, and ``boot_note`` says so (every later record carries it).
        Booting waits for one of the host's CPU slots (lab.vm.slots) and holds it
        until the agent answers.
        """
        self._check_image()

        def waiting(holders: str) -> None:
            self.say(f"waiting for a CPU slot to boot (held by: {holders})")

        with self.slots.hold(f"boot {self.name}", on_wait=waiting) as wait:
            self.slot_wait = wait
            self._start_or_retry()

    def _check_image(self) -> None:
        """ImageChanged when the image file is no longer what was resolved (a `make` during
        the run, a copy over it): the kernel's own cache entries are not checked."""
        want = self.kernel.image_sha256
        if want is None:
            return
        try:
            found = file_sha256(self.kernel.image)
        except OSError as exc:
            found = f"unreadable ({exc.strerror})"
        if found != want:
            raise ImageChanged(
                f"{self.kernel.image} changed since this run resolved it (SHA-256 {want} "
                f"then, {found} now): its records name the first, so no guest boots the "
                f"second; run again to test the new image")

    def _start_or_retry(self) -> None:
        try:
            self._start()
        except BootCrash as exc:
            title = next((s["title"] for s in exc.diagnosis.splats), "")
            if self.cfg.accel != "tcg" or not title.startswith(TEXT_PATCHING_OOPS):
                raise
            self.boot_note = (f"the boot oopsed while patching kernel text under "
                              f"multi-threaded TCG ({title}); booted again single-threaded")
            log.warning("%s: %s", self.kernel.spec, self.boot_note)
            self.say(f"the boot oopsed while patching kernel text ({title}): booting again "
                     "single-threaded")
            self.cfg = dataclasses.replace(self.cfg, accel="tcg-single")
            self.accel = Accel("tcg-single", f"tcg-single after a text-patching oops under "
                                             f"multi-threaded TCG ({title})")
            self._start()

    def _start(self) -> None:
        self.boots += 1
        self.closed, self.windows, self.seen = None, [], []
        self.flood_charged = False
        suffix = "" if self.boots == 1 else f"-boot{self.boots}"
        vm = Vm(self.kernel, run_dir=self.run_dir, cache=self.cache, config=self.cfg,
                name=f"{self.name}{suffix}")
        self.say(f"booting {self.kernel.release} ({self.accel.describe()})")
        launched: list[Agent] = []
        # The agent is staged on the host while QEMU boots (a changed agent is built: the
        # bytecode and the cffi extension, seconds on a loaded host), then pushed and
        # started while the guest probes its NVMe devices; its hello is waited for below.
        with concurrent.futures.ThreadPoolExecutor(1, "stage") as pool:
            staged = pool.submit(stage, self.cache)

            def launch(ssh: Ssh) -> None:
                agent = Agent.launch(ssh, cache=self.cache, slowdown=self.cfg.slowdown,
                                     timeline=vm.timeline, staged=staged.result())
                agent.dead = vm.timeline.dead  # a panic under panic=0 ends QEMU no more
                launched.append(agent)

            vm.while_probing = launch
            try:
                self.vm = vm.__enter__()
            except InfraError as exc:
                raise self._boot_failure(exc, vm.console_log) from exc
        self.boot_seconds = vm.boot_seconds
        started = time.monotonic()
        try:
            self.agent = launched[0]
            self.agent.handshake()
        except InfraError as exc:
            self.stop()
            raise self._boot_failure(exc, vm.console_log) from exc
        except BaseException:
            self.stop()
            raise
        self.agent.default_timeout = self.call_timeout
        self.agent_seconds = time.monotonic() - started
        self.say(vm.timeline.progress_line())
        if vm.gdb_socket is not None:
            for line in gdbstub.attach_lines(self.kernel, vm.gdb_socket, cache=self.cache):
                self.say(line)
        append_timeline(self.run_dir, vm.timeline.to_lines(vm.name))
        self.replace_reason, self.replace_cause, self.detectors_note = "", "", ""
        if self.facts is None:
            self.facts = self._learn_config(self.agent)

    def _boot_failure(self, exc: InfraError, console: Path) -> BaseException:
        """A boot that never reached the agent: the kernel's crash, or the machinery's."""
        text = console.read_text(errors="replace") if console.exists() else ""
        found = splat.parse(text)
        crash = [s for s in found if s.fatal or s.kind in ("KASAN", "BUG", "OOPS", "PANIC")]
        if not crash:
            return exc
        first = crash[0]
        return BootCrash(Diagnosis("CRASH", f"{first.title}; {exc}",
                                   [s.to_dict() for s in found], first.excerpt))

    def _learn_config(self, agent: Agent) -> ConfigFacts:
        """The config of a kernel that came without one: /proc/config.gz, else the kernel's
        own answers (a syscall that says ENOSYS is not built in)."""
        text = agent.call("sys.kernel_config")
        if text:
            (self.run_dir / f"config-{self.kernel.release}").write_text(text)
            return ConfigFacts.from_text(text, source="guest:/proc/config.gz")
        return ConfigFacts.from_probe(agent.call("sys.probe_features"))

    def stop(self) -> None:
        if self.agent is not None:
            self.agent.close()
            self.agent = None
        if self.vm is not None:
            self.vm.stop()
            self.vm = None

    def ensure(self) -> bool:
        """Boot a fresh guest if the last one died or hung; True if it rebooted."""
        if self.vm is not None and not self.replace_reason and self.healthy():
            return False
        reason = self.replace_reason or "the guest stopped answering"
        if self.on_replace is not None:
            self.on_replace(self, reason)
        cause = self.replace_cause if self.replace_reason else ""
        if cause != "planned":
            if len(self.recoveries) >= self.max_reboots:
                kernel = all(c == "kernel" for c in [*self.recoveries, cause])
                raise RebootLimit(
                    f"{len(self.recoveries)} guest replacements in this run (limit "
                    f"{self.max_reboots}, --lab-max-reboots); stopping "
                    f"{'a crash loop of the kernel' if kernel else 'a likely crash loop'}"
                    f"; last: {reason}", kernel=kernel)
            self.recoveries.append(cause)
        log.warning("replacing the guest of %s: %s", self.kernel.spec, reason)
        self.say(f"replacing the guest ({reason})")
        self.stop()
        self.start()
        return True

    def healthy(self) -> bool:
        return (self.vm is not None and self.vm.alive() and self.agent is not None
                and self.agent.alive())

    # -- evidence -----------------------------------------------------------------

    def console_offset(self) -> int:
        if self.vm is None or not self.vm.console_log.exists():
            return 0
        return self.vm.console_log.stat().st_size

    def console_since(self, offset: int) -> str:
        if self.vm is None or not self.vm.console_log.exists():
            return ""
        with open(self.vm.console_log, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    def flood(self) -> str:
        """Why a test fails when this guest's console passed its cap since the last window
        that looked ("" when it has not, or once said): the guest is marked for replacement
        (the console's kernel reports are no longer seen)."""
        flood = self.vm.flooded if self.vm is not None else None
        if flood is None or self.flood_charged:
            return ""
        self.flood_charged = True
        if not self.replace_reason:
            self.replace_reason = "the guest flooded its console"
            self.replace_cause = "kernel"  # the guest's doing (its kernel or the test)
        return (f"the guest flooded its console: more than the console log's cap of "
                f"{flood.head_bytes} bytes (KERNEL_LAB_CONSOLE_CAP); {flood.log_path} keeps "
                f"the first of them and, once the guest stops, its last {flood.tail_bytes} "
                f"bytes; the lab no longer sees kernel reports there, so the guest is replaced")

    def diagnose(self, exc: BaseException, *, console_offset: int) -> Diagnosis:
        """Classify a failed call and mark the guest for replacement."""
        vm = self.vm
        if vm is None:
            return Diagnosis("INFRA", f"no guest: {exc}")
        # A call that timed out on a kernel the console says died (under panic=0 QEMU and
        # its network outlive a panic) is the crash's, not a hang.
        if isinstance(exc, AgentTimeout) and vm.timeline.dead() is None:
            verdict, summary = "HANG", str(exc)
            if vm.alive():
                self._dump_blocked_tasks()
        else:
            # Give a dying kernel a moment to finish printing and QEMU to exit.
            deadline = time.monotonic() + 3 * self.cfg.slowdown
            while vm.alive() and time.monotonic() < deadline:
                time.sleep(0.2)
            if not vm.alive():
                verdict, summary = "CRASH", "the guest died during the test"
            elif isinstance(exc, AgentError):
                verdict, summary = "INFRA", f"the agent failed: {exc}"
            else:
                verdict, summary = "INFRA", str(exc)
        text = self.console_since(console_offset)
        found = splat.parse(text)
        if verdict == "INFRA" and any(s.fatal for s in found):
            verdict, summary = "CRASH", f"fatal kernel splat: {found[0].title}"
        lines = text.splitlines()
        excerpt = "\n".join(lines[-EXCERPT_LINES:])
        if found:
            summary += f" ({found[0].title})"
            excerpt = found[0].excerpt
        # A call that hung on emulated NVMe the driver gave up on: the machinery's.
        verdict, summary = nvme.diagnosed(verdict, summary, lines,
                                          splats=[s.to_dict() for s in found])
        if verdict == "INFRA" and nvme.events(lines):
            excerpt = "\n".join(nvme.events(lines)[:nvme.SHOWN])
        flood = self.flood()
        if flood:  # its console holds less than the test's evidence: say why
            summary += f"; {flood}"
        self.replace_reason = f"{verdict.lower()}: {summary}"
        self.replace_cause = "kernel" if verdict in ("CRASH", "HANG") else ""
        data = self._dump(vm) if verdict in ("CRASH", "HANG") and self.cfg.dump else {}
        return Diagnosis(verdict, summary, [s.to_dict() for s in found], excerpt, data=data)

    def _dump(self, vm: Vm) -> dict[str, object]:
        """The guest's memory to RUN_DIR/vmcore-VM-N.kdump (.elf), once per boot: the
        record's data names it ("vmcore"), or says why there is none ("vmcore_error")."""
        if vm.dumped:
            return {"vmcore": vm.dumped}
        self.dumps += 1
        suffix = "elf" if self.cfg.dump == "elf" else "kdump"
        path = self.run_dir / f"vmcore-{vm.name}-{self.dumps}.{suffix}"
        started = time.monotonic()
        try:
            size = vm.dump(path, self.cfg.dump)
        except (InfraError, OSError) as exc:  # the diagnosis stands without it
            log.warning("%s: no dump of the guest's memory: %s", self.kernel.spec, exc)
            return {"vmcore_error": str(exc)}
        seconds = time.monotonic() - started
        log.info("%s: the guest's memory in %s (%.1f MB, %.1f s)", self.kernel.spec, path,
                 size / 1e6, seconds)
        self.say(f"the guest's memory dumped to {path} ({size / 1e6:.1f} MB, {seconds:.1f} s)")
        return {"vmcore": str(path), "vmcore_bytes": size, "vmcore_seconds": round(seconds, 1)}

    def _dump_blocked_tasks(self) -> None:
        """sysrq-w: the kernel prints its blocked (D state) tasks to the console."""
        if self.vm is None or self.vm.ssh is None:
            return
        try:
            self.vm.ssh.run(["sh", "-c", "echo w > /proc/sysrq-trigger"], timeout=10)
            time.sleep(1)  # let the console catch up
        except InfraError:
            pass


def kernel_args(kernel: Kernel, extra: list[str], *, dump: bool = False,
                gdb: bool = False, keep: bool = False) -> tuple[str, ...]:
    """The lab's kernel parameters for ``kernel``, then the user's (a later one wins)."""
    args = list(DEFAULT_KERNEL_ARGS)
    if keep and not dump:
        # --keep-on-failure: a panicked guest is kept (paused) for gdb, as for a dump.
        args.append("panic=0")
    if dump:
        # A panicked guest must outlive its panic to be dumped: virtme-ng passes panic=-1
        # (reboot at once, and -no-reboot ends QEMU); panic=0 waits forever instead, and
        # the console tells the lab it died (lab.vm.timeline).  kernel_lab.vmcoreinfo:
        # guest/boot.sh loads the fw_cfg driver that hands QEMU the VMCOREINFO note.
        args += ["panic=0", "kernel_lab.vmcoreinfo"]
    if gdb:
        # The symbols' addresses (vmlinux, System.map) are where the kernel runs.
        args.append(gdbstub.NOKASLR)
    if kernel.config_option("KASAN") == "y":
        # KASAN reports only the first bug of a boot without it.  With it the guest is
        # kept after a KASAN report (lab.results.splat.detectors_off), so every test
        # that hits the bug gets its own FAIL, and a test with two bugs shows both.
        args.append("kasan_multi_shot")
    return (*args, *extra)


def dump_format(dump: str, kernel: Kernel) -> str:
    """The format a CRASH or HANG guest's memory is written in ("" for none): --dump's, and
    for "auto" kdump-zlib (compressed, zero pages left out) on the debug variant's kernels."""
    if dump == "auto":
        return "kdump-zlib" if "debug" in kernel.variant.split("+") else ""
    return "" if dump == "off" else dump


def machine_for(kernel: Kernel, guest: GuestOptions, *, cache: Path, run_dir: Path,
                worker: str = "main", ssh_port: int | None = None, keep: bool = False,
                say: Callable[[str], None] | None = None) -> Machine:
    """The guest a run boots for ``kernel`` (not started): the accelerator chosen for it,
    the lab's kernel parameters and the user's, the NVMe controllers, the console cap.
    `lab run`'s cells, `lab shell` and `lab exec` all boot it (a UserError if the
    accelerator asked for cannot be had).  ``keep``: the guest is to outlive a panic
    (`lab run --keep-on-failure`)."""
    accel = choose(cache, image=kernel.image, requested=guest.accel)
    dump = dump_format(guest.dump, kernel)
    cfg = VmConfig(
        cpus=guest.cpus,
        memory=guest.memory,
        accel=accel.name,
        boot_timeout=guest.boot_timeout,
        ssh_port=ssh_port,
        kernel_args=kernel_args(kernel, list(guest.append), dump=bool(dump), gdb=guest.gdb,
                                keep=keep),
        console_cap=console_cap(),
        dump=dump,
        gdb=guest.gdb,
    )
    # Two variants of one source share a release: keep their consoles apart.
    name = f"{worker}-{kernel.release}" + (
        "" if kernel.variant == PREBUILT else f"-{kernel.variant}")
    return Machine(kernel, run_dir=run_dir, cache=cache, config=cfg, name=name,
                   call_timeout=guest.call_timeout, max_reboots=guest.max_reboots,
                   accel=accel, say=say)
