"""What the kernel printed after a test's window closed: judged, and charged to that test.

A test's window closes once the log has gone quiet, but deferred work prints later
(RCU callbacks, io_ring_exit_work, aio's percpu-ref free, under TCG seconds later).
The next window opens where the last one closed (lab.run.watch), and what lies
between is this module's: judged as the previous test's aftermath (a splat, new
taint), with a hung task charged to the test in whose window it began.  The log is
read once more before a guest is replaced or stopped, and a guest that died between
tests makes the test after which it died a CRASH with the console's evidence.

The entries go onto the worker's next test report (lab.run.records), and the
Recorder, which holds a test's record until its aftermath is known, folds them in.
What no record can hold any more (a hung task that began in a test already
recorded, a splat on the console that no window saw: the backstop) is a finding in
the run directory (findings.jsonl), listed in the summary.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import pytest

from lab.errors import InfraError
from lab.kernel.decode import decode_splats
from lab.results import splat
from lab.results.record import append_finding
from lab.results.verdict import Verdict
from lab.run import watch
from lab.run.keys import AFTERMATH_KEY, RUN_DIR_KEY
from lab.vm.agent import AgentError
from lab.vm.session import Closed, Machine

log = logging.getLogger("lab.run.aftermath")

BETWEEN = "between tests"


def charge(config: pytest.Config, test: str, entry: dict[str, Any]) -> None:
    """Queue ``entry`` (the aftermath of ``test``) for the worker's next report."""
    config.stash.setdefault(AFTERMATH_KEY, []).append({"test": test, **entry})


def drain(config: pytest.Config) -> list[dict[str, Any]]:
    """The queued entries, once: what the report being made carries."""
    queued = config.stash.get(AFTERMATH_KEY, [])
    config.stash[AFTERMATH_KEY] = []
    return queued


def saw(machine: Machine, seen: watch.Assessment) -> None:
    """Note the splats a window read (the console backstop skips them)."""
    machine.seen += [s.title for s in [*seen.splats, *seen.earlier]]
    machine.seen += [s.title for _, s in seen.elsewhere]


def findings(config: pytest.Config, machine: Machine, seen: watch.Assessment,
             *, read_in: str) -> None:
    """Hung tasks that began where no record can hold them any more: findings."""
    run_dir = config.stash.get(RUN_DIR_KEY, None)
    if run_dir is None:
        return
    for test, s in seen.elsewhere:
        append_finding(run_dir, _finding(
            machine, s, charged_to=test,
            why=f"a hung task that began in {test}'s window, reported after its record "
                f"was written (read in {read_in})"))
    for s in seen.earlier:
        append_finding(run_dir, _finding(
            machine, s, charged_to="",
            why=f"a hung task that began before this guest's first test window (read in "
                f"{read_in})"))


def judge(closed: Closed, gap: watch.Findings, machine: Machine, *,
          where: str) -> tuple[dict[str, Any], watch.Assessment]:
    """The aftermath entry of the test ``closed`` names, from what the log showed since."""
    seen = watch.assess(gap, watch.gap_mark(closed), test=closed.test, windows=machine.windows)
    entry: dict[str, Any] = {"where": where, "verdict": "", "reason": ""}
    if seen.splats:
        first = seen.splats[0]
        entry.update(verdict=Verdict.CRASH.value if seen.fatal else Verdict.FAIL.value,
                     reason=f"kernel splat after the test's window closed ({where}): "
                            f"{first.title}",
                     splats=decode_splats(machine.kernel, [s.to_dict() for s in seen.splats]),
                     excerpt=first.excerpt)
    elif seen.taint_changed:
        entry.update(verdict=Verdict.FAIL.value,
                     reason=f"the kernel's taint changed after the test's window closed "
                            f"({where}): {seen.taint_before or '-'} -> {seen.taint_after}")
    if seen.lost:  # the gap is incomplete: what the kernel printed in the lost part is unknown
        entry["kmsg_lost"] = seen.lost
    flood = machine.flood()
    if flood:
        flood = f"{flood} (after the test's window closed, {where})"
        entry.update(verdict=entry["verdict"] or Verdict.FAIL.value,
                     reason="; ".join(r for r in (entry["reason"], flood) if r))
    watch.act_on_detectors(machine, seen, since=f"the gap after {closed.test}")
    saw(machine, seen)
    return entry, seen


def died(machine: Machine, closed: Closed, exc: BaseException) -> dict[str, Any]:
    """The aftermath entry of a test after which the guest died, from the console."""
    diag = machine.diagnose(exc, console_offset=closed.console_offset)
    machine.seen += [str(s.get("title", "")) for s in diag.splats]
    title = f" ({diag.splats[0].get('title')})" if diag.splats else ""
    if diag.verdict == Verdict.CRASH.value:
        what = f"the guest died after the test, before the next one began{title}"
    else:
        what = f"the guest stopped answering after the test: {diag.summary}"
    return {"where": BETWEEN, "verdict": diag.verdict, "reason": f"{diag.verdict}: {what}",
            "splats": decode_splats(machine.kernel, diag.splats), "excerpt": diag.excerpt,
            "data": diag.data}


def final_window(config: pytest.Config, machine: Machine, why: str) -> None:
    """Read the guest's log a last time before it is replaced or stopped (``why``), charge
    what it shows to the last test whose window closed, then run the console backstop.
    Never raises: the guest goes whatever this finds."""
    try:
        _final_window(config, machine, why)
    except Exception:  # evidence is a bonus here: the guest is replaced or stopped anyway
        log.warning("kernel-lab: the guest's last kernel-log read failed", exc_info=True)


def _final_window(config: pytest.Config, machine: Machine, why: str) -> None:
    if machine.vm is None:
        return  # no guest (a boot that failed): nothing printed since its last window
    closed, machine.closed = machine.closed, None
    if closed is not None:
        where = f"as the guest was stopped: {why}"
        if machine.healthy() and machine.agent is not None:
            try:
                _, gap = watch.begin(machine, machine.agent, "(the guest stops)", since=closed)
                assert gap is not None
                entry, seen = judge(closed, gap, machine, where=where)
                findings(config, machine, seen, read_in=where)
            except (AgentError, InfraError) as exc:
                entry = died(machine, closed, exc)
        else:
            entry = died(machine, closed, InfraError(f"the guest stopped answering ({why})",
                                                       phase="between tests"))
        charge(config, closed.test, entry)
    elif not machine.replace_reason and not machine.healthy():
        _silent_death(config, machine, why)
    backstop(config, machine, after=closed.test if closed else machine.last_test)


def _silent_death(config: pytest.Config, machine: Machine, why: str) -> None:
    """A guest that died while no window was open and no test is left to charge (before
    its first test): a finding, never a silent reboot."""
    run_dir = config.stash.get(RUN_DIR_KEY, None)
    if run_dir is None:
        return
    diag = machine.diagnose(InfraError(f"the guest stopped answering ({why})",
                                       phase="between tests"), console_offset=0)
    machine.seen += [str(s.get("title", "")) for s in diag.splats]
    title = str(diag.splats[0].get("title")) if diag.splats else f"{diag.verdict}: guest died"
    append_finding(run_dir, {
        "kernel": machine.kernel.spec, "vm": machine.vm.name if machine.vm else "",
        "title": title, "kind": "GUEST_DIED", "fatal": True, "excerpt": diag.excerpt,
        "test": "", "why": f"the guest died while no test's window was open: {diag.summary}"})


def backstop(config: pytest.Config, machine: Machine, *, after: str) -> None:
    """Every splat on this guest's console that no window (nor diagnosis) saw: a finding.

    The host holds the whole console: a record the kernel log lost (an overrun ring), a
    splat printed while no window was open (the boot), one written only to the console.
    """
    run_dir = config.stash.get(RUN_DIR_KEY, None)
    if run_dir is None or machine.vm is None:
        return
    left = Counter(machine.seen)
    for s in splat.parse(machine.console_since(0)):
        if left[s.title] > 0:
            left[s.title] -= 1
            continue
        append_finding(run_dir, _finding(
            machine, s, charged_to="",
            why=f"on the guest's console, in no test's kernel-log window (the last test "
                f"before it stopped: {after or 'none'})"))


def _finding(machine: Machine, s: splat.Splat, *, charged_to: str, why: str) -> dict[str, Any]:
    return {"kernel": machine.kernel.spec, "vm": machine.vm.name if machine.vm else "",
            "title": s.title, "kind": s.kind, "fatal": s.fatal, "excerpt": s.excerpt,
            "test": charged_to, "why": why}
