"""The guard around every test that uses the guest: the kernel log is watched from the
start of its setup to the end of its teardown, and a failure is classified by where
it came from.

- The autouse fixture ``_lab_guard`` is set up before the test's own fixtures and torn
  down after them, so a splat in a fixture's teardown (io_destroy of the test's
  contexts, closing its rings) is the test's.  Before closing the window it resets
  the agent (whatever the test left open is closed, so the next test starts clean)
  and waits for the log to go quiet (lab.run.watch).  Opening a window also reads what
  the kernel printed since the last one closed: the previous test's aftermath
  (lab.run.aftermath), charged to it.
- A test marked ``saturates_cpus`` holds one of the host's CPU slots (lab.vm.slots)
  from the start of its window to its end; a wait for the slot is kept in its record.
- When the kernel config was unknown before boot, ``requires_config`` is decided here,
  from what the guest told (lab.vm.session); an option still unknown runs the test.
  ``requires_feature`` is decided here too, by probing the guest's kernel
  (lab.run.features): both before the window opens and before the test's own
  fixtures, so a test its kernel cannot run SKIPs before it did any I/O.
- A guest whose console passed its cap (lab.vm.vm: the log no longer shows the
  kernel's reports) fails the test whose window saw it, and is replaced after it.
- An agent or machinery error in any phase is diagnosed at once (CRASH, HANG or
  INFRA, from the console and QEMU's state) and the guest is marked for replacement;
  a guest op that raised a Python exception is the test's failure and the guest is
  kept.
- Ctrl-C in a phase keeps what the test had shown (``interrupted.jsonl``): how long
  the phase had run, and any splat on the console since the test began (a hung or
  crashed test that the user gave up on).  Only a file on the host is read: the guest
  may be dying with the run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Generator, Iterator

import pytest

from lab.errors import InfraError
from lab.kernel import facts as facts_mod
from lab.results import splat
from lab.results.record import append_interrupted
from lab.results.text import printable
from lab.results.verdict import Diagnosis, Verdict
from lab.run import aftermath, features, watch
from lab.run.keys import (
    ASSESSMENT_KEY,
    DIAGNOSIS_KEY,
    MARK_KEY,
    RUN_DIR_KEY,
    item_cell,
    item_kernel,
    lab_data,
    required_config,
)
from lab.run.progress import terminal_writer
from lab.vm import slots
from lab.vm.agent import Agent, AgentError
from lab.vm.session import BootCrash, Closed, Machine, RebootLimit

log = logging.getLogger("lab.run.guard")

MACHINE_KEY = pytest.StashKey[Machine]()
INTERRUPTED_KEY = pytest.StashKey[bool]()  # Ctrl-C came during one of the test's phases


@pytest.fixture(autouse=True)
def _lab_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """Open the test's kernel-log window before its fixtures; close it after them."""
    item = request.node
    if "agent" not in request.fixturenames or RUN_DIR_KEY not in request.config.stash:
        yield
        return
    machine: Machine = request.getfixturevalue("lab_machine")
    item.stash[MACHINE_KEY] = machine
    agent: Agent = request.getfixturevalue("agent")
    _check_config_in_guest(item, machine)
    closed = machine.closed
    try:
        features.check(item, agent, label=f"{machine.kernel.spec} ({machine.kernel.release})")
        mark, gap = watch.begin(machine, agent, item.nodeid, since=closed)
    except (AgentError, InfraError) as exc:
        if closed is None:
            raise
        # The guest died (or hung) after the last test's window closed, before this one
        # opened: the last test's CRASH/HANG (lab.run.aftermath), charged once. This test
        # never began: INFRA, naming the test it is charged to.
        machine.closed = None
        entry = aftermath.died(machine, closed, exc)
        aftermath.charge(request.config, closed.test, entry)
        item.stash[DIAGNOSIS_KEY] = Diagnosis(
            verdict=Verdict.INFRA.value, phase="setup",
            summary=f"the guest was lost before this test began; charged to {closed.test} "
                    f"({entry['reason']})")
        raise
    machine.closed = None
    machine.windows.append((mark.opened_us, item.nodeid))
    if closed is not None and gap is not None:
        entry, gap_seen = aftermath.judge(closed, gap, machine, where=aftermath.BETWEEN)
        aftermath.findings(request.config, machine, gap_seen,
                           read_in=f"the gap before {item.nodeid}")
        aftermath.charge(request.config, closed.test, entry)
        if machine.replace_reason and machine.replace_cause == "planned":
            # A detector went quiet in the gap: this test runs on that guest (it is
            # replaced after it), and its record says it ran without that detector.
            lab_data(item)["detectors_off"] = (f"{machine.replace_reason} (in the gap before "
                                               "this test)")
    previous, machine.last_test = machine.last_test, item.nodeid
    if machine.boot_note:
        lab_data(item)["boot_note"] = machine.boot_note
    if machine.detectors_note and "detectors_off" not in lab_data(item):
        lab_data(item)["detectors_off"] = machine.detectors_note
    saturates = item.get_closest_marker("saturates_cpus") is not None
    cell = item_cell(item)
    write = terminal_writer(request.config)

    def waiting(holders: str) -> None:
        write(f"kernel-lab: [{cell.label if cell else '-'}] {item.name} waits for a CPU "
              f"slot: it keeps every vCPU busy (held by: {holders})")

    with machine.slots.hold(item.nodeid, on_wait=waiting) if saturates else \
            contextlib.nullcontext(slots.Wait(0.0, held=False)) as wait:
        if wait.seconds >= slots.SHOWN_S:
            lab_data(item).update(slot_wait_s=round(wait.seconds, 1), slot_held=wait.held)
            mark = after_wait(mark, wait.seconds)
        item.stash[MARK_KEY] = mark
        yield
        _close(item, machine, agent, mark, previous)


def after_wait(mark: watch.Mark, waited: float) -> watch.Mark:
    """The window's mark once the test waited ``waited`` s for a CPU slot inside it: the
    test's body begins after the wait, so a splat printed during it counts as the test's
    early moments (the record names the previous test).  The window still opened before
    the wait (``opened_us``): a task blocked since then is the test's."""
    if not mark.ts_us:  # the begin marker's time is unknown: it stays unknown
        return mark
    return dataclasses.replace(mark, ts_us=mark.ts_us + int(waited * 1_000_000),
                               opened_us=mark.opened_us or mark.ts_us)


def _check_config_in_guest(item: pytest.Item, machine: Machine) -> None:
    required = required_config(item)
    k = item_kernel(item)
    if not required or k is None or k.config is not None:
        return  # decided before any fixture (lab.run.plugin), from the kernel's own config
    reason = facts_mod.mismatch(machine.facts, required, label=f"{k.spec} ({k.release})")
    if reason is not None:
        pytest.skip(reason)
    unknown = facts_mod.unknown(machine.facts, required)
    if unknown:
        # Run it: an option nobody could tell is the test's to find out, never a SKIP.
        lab_data(item)["config_unknown"] = unknown


def _close(item: pytest.Item, machine: Machine, agent: Agent, mark: watch.Mark,
           previous: str) -> None:
    if DIAGNOSIS_KEY in item.stash:
        return  # the guest died or hung during the test: the diagnosis has the evidence
    if item.stash.get(INTERRUPTED_KEY, False):
        return  # Ctrl-C: the run ends, and the guest with it; the test gets no verdict
    data = lab_data(item)
    try:
        left = agent.call("agent.reset")
        found = watch.end(agent, mark, item.nodeid)
    except (AgentError, InfraError) as exc:
        # The guest died or hung after the test's last call (its teardown, deferred
        # work): evidence, never a PASS.
        diag = machine.diagnose(exc, console_offset=mark.console_offset)
        diag.summary = f"after the test's last call: {diag.summary}"
        diag.phase = "teardown"
        item.stash[DIAGNOSIS_KEY] = diag
        machine.seen += [str(s.get("title", "")) for s in diag.splats]
        pytest.fail(printable(f"{diag.verdict}: {diag.summary}"), pytrace=False)
    # What the kernel prints from here until the next window opens is this test's.
    machine.closed = Closed(item.nodeid, seq=found.seq, taint=found.taint_after,
                            console_offset=machine.console_offset(),
                            opened_us=mark.opened_us)
    left_open = {k: v for k, v in left.items() if v}
    if left_open:
        data["left_open"] = left_open
    seen = watch.assess(found, mark, test=item.nodeid, windows=machine.windows)
    item.stash[ASSESSMENT_KEY] = seen
    aftermath.saw(machine, seen)
    aftermath.findings(item.config, machine, seen, read_in=f"{item.nodeid}'s window")
    if seen.early and previous:
        data["previous_test"] = previous  # the splat may be that test's deferred work
    if seen.earlier:
        data["began_before_test"] = [s.title for s in seen.earlier]
    if seen.nvme_events:
        data["nvme_events"] = seen.nvme_events[:10]
    if seen.lost:
        # The window is incomplete: what the test logged in the lost part is unknown.
        data["kmsg_lost"] = seen.lost
    if seen.taint_changed:
        data.update(taint_before=seen.taint_before, taint_after=seen.taint_after)
    watch.act_on_detectors(machine, seen, since=item.nodeid)
    flood = machine.flood()
    if flood:
        data["console_flooded"] = True
    problem = "\n".join(p for p in (seen.problem(), flood) if p)
    if problem:
        pytest.fail(printable(problem), pytrace=False)


def _diagnosing(item: pytest.Item, when: str) -> Generator[None, None, None]:
    """Run a phase; an agent or machinery error in it is diagnosed while it is fresh."""
    started = time.monotonic()
    try:
        try:
            return (yield)
        except (RebootLimit, BootCrash):
            raise  # already what they are: the run's stop, the kernel's boot crash
        except (AgentError, InfraError) as exc:
            machine = item.stash.get(MACHINE_KEY, None)
            mark = item.stash.get(MARK_KEY, None)
            if machine is not None and DIAGNOSIS_KEY not in item.stash:
                diag = machine.diagnose(exc, console_offset=mark.console_offset if mark else
                                        machine.console_offset())
                if when == "setup":
                    diag.summary = f"before the test began: {diag.summary}"
                diag.phase = when
                machine.seen += [str(s.get("title", "")) for s in diag.splats]
                item.stash[DIAGNOSIS_KEY] = diag
            raise
    except KeyboardInterrupt:  # in the phase, or in its diagnosis (a sysrq dump, a wait)
        item.stash[INTERRUPTED_KEY] = True
        keep_interrupted(item, when, time.monotonic() - started)
        raise


def keep_interrupted(item: pytest.Item, when: str, seconds: float) -> None:
    """Note in the run directory what the test Ctrl-C cut short had shown: its phase, how
    long that had run, the splats on the console since the test's mark.  Never raises:
    the interrupt goes on whatever happens here."""
    try:
        run_dir = item.config.stash.get(RUN_DIR_KEY, None)
        if run_dir is None:
            return
        entry: dict[str, object] = {"nodeid": item.nodeid, "phase": when,
                                    "seconds": round(seconds, 1)}
        machine = item.stash.get(MACHINE_KEY, None)
        mark = item.stash.get(MARK_KEY, None)
        if machine is not None and mark is not None:
            found = splat.parse(machine.console_since(mark.console_offset))
            if found:
                entry["splats"] = [s.to_dict() for s in found]
        append_interrupted(run_dir, entry)
    except Exception:  # evidence is a bonus: the interrupt goes on whatever happens here
        log.warning("kernel-lab: could not keep the interrupted test's evidence",
                    exc_info=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    return (yield from _diagnosing(item, "setup"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    return (yield from _diagnosing(item, "call"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    return (yield from _diagnosing(item, "teardown"))
