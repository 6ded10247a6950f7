"""From pytest's reports to the lab's records: one per test, and one for every test the
run did not reach.

Each phase's report carries the test's evidence so far (lab.results.evidence), whole,
under one user property: each phase's outcome with the lab's hint of what a failure
means where pytest alone would say "failed" (a diagnosis, a fatal splat, where an error
came from), the test's notes and measurements, the kernel's splats and who the test ran
on.  ``record_of`` folds the teardown's into the test's record with
lab.results.verdict.  The Recorder (controller only, so
results.jsonl has one writer under xdist) appends each record as its teardown report
arrives, with known-issues.toml applied (a failure it expects is XFAIL) and a progress
line for its cell, and at the end writes NOTRUN for every expected test without one.
A test whose kernel-log window closed cleanly is held until its aftermath (what the
kernel printed after the window, lab.run.aftermath) comes with a later report of its
worker: a splat there, new taint or a guest that died makes its verdict.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Generator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from lab.errors import EXIT_INTERRUPTED, InfraError, UserError
from lab.kernel.decode import decode_splats
from lab.paths import REPO, cache_root
from lab.results import known as known_mod
from lab.results import matrixfile, reproduce
from lab.results import summary as summary_mod
from lab.results.evidence import KEY, Evidence, PhaseOutcome, decode, encode
from lab.results.record import (
    Record,
    append_phase,
    append_record,
    read_aftermath,
    read_interrupted,
    read_records,
    read_stop,
    write_stop,
)
from lab.results.splat import HANG_KINDS
from lab.results.text import printable
from lab.results.verdict import Verdict, fold, worst
from lab.run import aftermath
from lab.run.cells import plain_nodeid, repeat_of
from lab.run.guard import MACHINE_KEY
from lab.run.keys import (
    ASSESSMENT_KEY,
    DIAGNOSIS_KEY,
    MACHINES_KEY,
    RUN_DIR_KEY,
    STARTED_KEY,
    add_evidence,
    config_of,
    evidence_so_far,
    item_cell,
    item_kernel,
    kernel_spec,
    lab_data,
)
from lab.run.progress import Progress, terminal_writer
from lab.vm.agent import AgentOpError, AgentTimeout, GuestOSError
from lab.vm.session import BootCrash


def _hint(item: pytest.Item, call: pytest.CallInfo[None]) -> str | None:
    """What a failed phase means, where pytest alone would say "failed"."""
    diag = item.stash.get(DIAGNOSIS_KEY, None)
    if diag is not None and diag.phase == call.when:
        return diag.verdict
    seen = item.stash.get(ASSESSMENT_KEY, None)
    if call.when == "teardown" and seen is not None and seen.fatal:
        return Verdict.CRASH.value
    exc = call.excinfo
    if exc is None:
        return None
    if exc.errisinstance(BootCrash):
        return Verdict.CRASH.value
    if exc.errisinstance((GuestOSError, AgentOpError, AssertionError, pytest.fail.Exception)):
        # An errno, a wrong value or a broken op, in a fixture as in the test: the
        # kernel (or the test) is wrong, not the machinery.
        return Verdict.FAIL.value
    if exc.errisinstance(AgentTimeout):
        return Verdict.HANG.value
    if exc.errisinstance(InfraError):
        return Verdict.INFRA.value
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    rep = yield
    if rep.skipped:
        _skip_at_the_test(item, rep)
    exc = call.excinfo
    if exc is not None and exc.errisinstance(AgentOpError):
        assert isinstance(exc.value, AgentOpError)
        lab_data(item)["guest_traceback"] = exc.value.guest_traceback
    if exc is not None and exc.errisinstance(BootCrash):
        assert isinstance(exc.value, BootCrash)
        boot = exc.value.diagnosis
        add_evidence(item, splats=tuple(boot.splats), excerpt=boot.excerpt,
                     reason=f"CRASH: the kernel crashed during boot: {boot.summary}")
    if call.when == "setup":
        _identify(item)
    if call.when == "teardown":
        _found_by_guard(item, rep)
        _decode(item)
        machine = item.stash.get(MACHINE_KEY, None)
        if machine is not None and machine.closed is not None and \
                machine.closed.test == item.nodeid:
            add_evidence(item, aftermath_pending=True)  # judged with a later report
    phase = phase_of(rep, hint=_hint(item, call))
    so_far = add_evidence(item, phases=(*evidence_so_far(item).phases, phase))
    if RUN_DIR_KEY in item.config.stash:  # a lab run: its Recorder reads it
        # What the test left so far, whole, on this phase's report (its own copy of the
        # item's properties): the teardown's is the test's (lab.results.evidence).
        rep.user_properties.append(
            (KEY, encode(replace(so_far, data={**so_far.data, **lab_data(item)}))))
    rep.user_properties += [(AFTERMATH, entry) for entry in aftermath.drain(item.config)]
    return rep


# The user property that carries a worker's aftermath entries (lab.run.aftermath), each
# for the test it names, to the Recorder.
AFTERMATH = "lab_aftermath"


def charge(record: Record, entry: dict[str, Any]) -> Record:
    """``record`` with its aftermath (lab.run.aftermath) folded in: a splat, new taint or
    a dead guest after the test's window is its verdict when worse than its own (a SKIP
    or a PASS included); the entry is kept in its data."""
    verdict = str(entry.get("verdict") or "")
    if not verdict:
        if entry.get("kmsg_lost"):  # nothing seen, but not all was read: say so
            return replace(record, data={**record.data, "after_test": {
                "where": str(entry.get("where", "")), "kmsg_lost": entry["kmsg_lost"]}})
        return record
    after = {"verdict": verdict, "reason": str(entry.get("reason", "")),
             "where": str(entry.get("where", "")),
             **({"kmsg_lost": entry["kmsg_lost"]} if entry.get("kmsg_lost") else {}),
             **dict(entry.get("data") or {})}  # the guest's memory dump (lab.vm.session)
    new = worst([record.verdict, verdict])
    return replace(record, verdict=new,
                   reason=after["reason"] if new != record.verdict else record.reason,
                   splats=[*record.splats, *entry.get("splats", [])],
                   excerpt=record.excerpt or str(entry.get("excerpt", "")),
                   data={**record.data, "after_test": after})


_LAB_CODE = REPO / "lab"


def _skip_at_the_test(item: pytest.Item, rep: pytest.TestReport) -> None:
    """A SKIP the lab decided (a config the kernel lacks) points at the test, not at the
    lab's hook that raised it: pytest's short summary shows where a skip was raised
    (pytest does the same for its skip marks)."""
    longrepr = rep.longrepr
    if not isinstance(longrepr, tuple) or len(longrepr) != 3:
        return
    where, _, reason = longrepr
    try:
        raised_in_lab = Path(str(where)).resolve().is_relative_to(_LAB_CODE)
    except OSError:
        return
    if raised_in_lab:
        path, line = item.reportinfo()[:2]
        rep.longrepr = (str(path), (line or 0) + 1, reason)


def _identify(item: pytest.Item) -> None:
    cell = item_cell(item)
    if cell is not None:
        add_evidence(item, cell=cell.label)
        # The guest this test ran on, or the cell's guest on this worker for a test
        # skipped before it needed one.
        machine = item.stash.get(MACHINE_KEY, None) or \
            item.config.stash.get(MACHINES_KEY, {}).get(cell.label)
        if machine is not None:
            add_evidence(item, accel=machine.accel.to_dict())
    k = item_kernel(item)
    if k is not None:
        identity = k.identity()
        machine = item.stash.get(MACHINE_KEY, None)
        if k.config is None and machine is not None and machine.facts is not None:
            # Learnt from the guest: say so, and hash what it said.
            identity.update(config_source=machine.facts.source,
                            config_hash=machine.facts.digest)
        add_evidence(item, kernel=identity)
    claim = item.get_closest_marker("claim")
    if claim is not None and claim.args:
        add_evidence(item, claim=str(claim.args[0]))


def _found_by_guard(item: pytest.Item, rep: pytest.TestReport) -> None:
    """What the guard found, added once the test's window has closed."""
    diag = item.stash.get(DIAGNOSIS_KEY, None)
    seen = item.stash.get(ASSESSMENT_KEY, None)
    if diag is not None:
        add_evidence(item, splats=tuple(diag.splats), excerpt=diag.excerpt,
                     reason=f"{diag.verdict}: {diag.summary}")
        lab_data(item).update(diag.data)  # the guest's memory dump, where there is one
        rep.sections.append(("kernel-lab diagnosis",
                             printable(f"{diag.verdict}: {diag.summary}\n{diag.excerpt}")))
    elif seen is not None and seen.splats:
        add_evidence(item, splats=tuple(s.to_dict() for s in seen.splats))


def _decode(item: pytest.Item) -> None:
    """The test's splats with their traces decoded to file:line, where its kernel's kept
    vmlinux has DWARF (lab.kernel.decode; else as they are)."""
    found = evidence_so_far(item).splats
    kernel = item_kernel(item)
    if found and kernel is not None:
        add_evidence(item, splats=tuple(decode_splats(kernel, found)))


def carried(reports: Sequence[pytest.TestReport]) -> Evidence:
    """The evidence a test's reports carry: the last one's is the whole (a report made
    without the lab's hook carries none: then its phases alone)."""
    for rep in reversed(reports):
        for key, value in rep.user_properties:
            if key == KEY:
                return decode(str(value))
    return Evidence(phases=tuple(phase_of(rep) for rep in reports))


def to_record(nodeid: str, reports: list[pytest.TestReport], *, repeat: int = 0) -> Record:
    """One test's reports (setup, call, teardown) folded into its verdict record
    (``repeat``: which repetition of the test it is, 0 when not repeated)."""
    return record_of(nodeid, carried(reports), repeat=repeat)


def record_of(test: str, evidence: Evidence, *, repeat: int = 0) -> Record:
    """The record of ``test`` from its evidence, its verdict folded (lab.results.verdict)."""
    verdict, reason = fold(evidence)
    data = dict(evidence.data)
    return Record(
        test=test,
        verdict=verdict,
        duration=round(sum(p.duration for p in evidence.phases if p.when == "call"), 3),
        kernel=dict(evidence.kernel),
        cell=evidence.cell,
        reason=reason,
        claim=evidence.claim,
        deviations=list(evidence.deviations),
        observed=list(evidence.observed),
        splats=[dict(s) for s in evidence.splats],
        data=data,
        excerpt=evidence.excerpt,
        previous_test=str(data.pop("previous_test", "")),
        accel=dict(evidence.accel),
        repeat=repeat,
    )


def phase_of(rep: pytest.TestReport, *, hint: str | None = None) -> PhaseOutcome:
    """A report as the phase it was, with the lab's ``hint`` of what its failure means."""
    if rep.skipped:
        longrepr = rep.longrepr
        message = str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr)
    elif rep.failed:
        message = _first_line(rep)
    else:
        message = ""
    return PhaseOutcome(when=rep.when, outcome=rep.outcome, message=message,
                        duration=rep.duration, hint=hint or "")


def _first_line(rep: pytest.TestReport) -> str:
    crash = getattr(rep.longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message).splitlines()[0][:300]
    text = str(rep.longrepr).strip().splitlines()
    return text[-1][:300] if text else ""


class Recorder:
    """Writes one record per test as its teardown report arrives (controller only).

    With xdist the reports of every worker arrive here, so the run's results.jsonl
    has a single writer.  It knows every test the run was to run (collected here, or
    by each worker), so a run cut short still accounts for each one.
    """

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.run_dir: Path = config.stash[RUN_DIR_KEY]
        self.pending: dict[str, list[pytest.TestReport]] = {}
        self.expected: dict[str, str | None] = {}  # nodeid -> kernel spec
        self.written: set[str] = set()
        self.held: dict[str, Record] = {}  # by nodeid: waiting for their aftermath
        self.known = known_issues(config)
        self.progress = Progress(self.run_dir, write=terminal_writer(config),
                                 interval=config_of(config).progress_interval)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        for item in session.items:
            self.expected[item.nodeid] = kernel_spec(item)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        for nodeid in ids:
            self.expected.setdefault(nodeid, None)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        reports = self.pending.setdefault(report.nodeid, [])
        reports.append(report)
        waits = False  # for what the kernel prints after its window (a later report)
        if report.when == "teardown":
            del self.pending[report.nodeid]
            self.written.add(report.nodeid)
            found = carried(reports)
            waits = found.aftermath_pending
            self.held[report.nodeid] = record_of(plain_nodeid(report.nodeid), found,
                                                 repeat=repeat_of(report.nodeid))
        for key, value in report.user_properties:
            # An entry for a test already written is ignored.
            if key == AFTERMATH and isinstance(value, dict) and value.get("test") in self.held:
                self._write(charge(self.held.pop(str(value["test"])), value))
        if report.when == "teardown" and report.nodeid in self.held and not waits:
            self._write(self.held.pop(report.nodeid))

    def _write(self, record: Record) -> None:
        # A failure that known-issues.toml expects is XFAIL from the start.
        record = known_mod.apply(record, self.known, today=datetime.date.today())
        append_record(self.run_dir, record)
        self.progress.ended(record)

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        """Ctrl-C: the run stops with 130, and what ran is kept.

        The session then ends as usual: the guests are stopped, every test without a
        record gets a NOTRUN one naming this reason, and the summary, JUnit and report
        are written.
        """
        if excinfo.errisinstance(KeyboardInterrupt):  # pytest.exit() comes here too
            write_stop(self.run_dir, exit_code=EXIT_INTERRUPTED,
                               reason="interrupted (Ctrl-C)")

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # Entries no report carried (the run stopped before the next test's report):
        # this process's own, then the rest as they are.
        for entry in [*aftermath.drain(self.config), *read_aftermath(self.run_dir)]:
            if entry.get("test") in self.held:
                self._write(charge(self.held.pop(str(entry["test"])), entry))
        for nodeid in list(self.held):  # no later report said what came after them
            self._write(self.held.pop(nodeid))
        self._notrun()
        # Now that the records say what ran: command.txt names it exactly.
        reproduce.write_command(self.run_dir)

    def _notrun(self) -> None:
        missing = [n for n in self.expected if n not in self.written]
        if not missing:
            return
        stop = read_stop(self.run_dir)
        why = stop["reason"] if stop else "the run ended before it"
        m = matrixfile.read(self.run_dir)
        cells = {test: cell for cell, test in m.assigned} if m else {}
        specs = {str(c["label"]): c for c in m.cells} if m else {}
        # What each test Ctrl-C cut short had shown (lab.run.guard), by test and repetition.
        cut = {(plain_nodeid(str(e["nodeid"])), repeat_of(str(e["nodeid"]))): e
               for e in read_interrupted(self.run_dir)}
        for nodeid in missing:
            test, repeat = plain_nodeid(nodeid), repeat_of(nodeid)
            cell = cells.get(test, "")
            spec = self.expected[nodeid] or specs.get(cell, {}).get("spec")
            record = unfinished(test, cell=cell, kernel={"spec": spec} if spec else {},
                                repeat=repeat, why=why, started=nodeid in self.pending,
                                interrupted=cut.get((test, repeat)))
            append_record(self.run_dir, known_mod.apply(
                record, self.known, today=datetime.date.today()))


def unfinished(test: str, *, cell: str, kernel: dict[str, Any], repeat: int, why: str,
               started: bool, interrupted: dict[str, Any] | None = None) -> Record:
    """The record of a test that got no verdict of its own: NOTRUN ("not run", or "not
    finished" for a test whose setup had begun), or, when Ctrl-C cut it short
    (``interrupted``: lab.run.guard's entry) with a splat on the console since it began,
    that splat's verdict (a fatal one CRASH, a hang report HANG, else FAIL) with its
    excerpt: the evidence of a hung or crashed test the user gave up on.  Never PASS."""
    reason = f"{'not finished' if started else 'not run'}: {why}"
    base = Record(test=test, verdict=Verdict.NOTRUN.value, duration=0.0, cell=cell,
                  kernel=kernel, reason=reason, repeat=repeat)
    if interrupted is None:
        return base
    seconds = float(interrupted.get("seconds") or 0.0)
    phase = str(interrupted.get("phase") or "call")
    after = f"interrupted (Ctrl-C) after {seconds:.1f} s in its {phase}"
    splats = [s for s in interrupted.get("splats") or [] if isinstance(s, dict)]
    data = {"interrupted": {"phase": phase, "seconds": seconds}}
    if not splats:
        return replace(base, reason=f"not finished: {after}", duration=seconds, data=data)
    if any(s.get("fatal") for s in splats):
        verdict = Verdict.CRASH.value
    elif any(s.get("kind") in HANG_KINDS for s in splats):
        verdict = Verdict.HANG.value
    else:
        verdict = Verdict.FAIL.value
    title = str(splats[0].get("title") or splats[0].get("kind") or "?")
    return replace(base, verdict=verdict, duration=seconds, splats=splats, data=data,
                   excerpt=str(splats[0].get("excerpt") or ""),
                   reason=f"{verdict}: kernel splat while the test ran ({title}); {after}")


def known_issues(config: pytest.Config) -> list[known_mod.KnownIssue]:
    """The run's known issues (--lab-known-issues, else the project's file)."""
    path = config_of(config).known_issues
    try:
        return known_mod.load(path if path else known_mod.path_for(None))
    except UserError as exc:
        raise pytest.UsageError(str(exc)) from None


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[STARTED_KEY] = time.monotonic()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or RUN_DIR_KEY not in config.stash:
        return
    run_dir = config.stash[RUN_DIR_KEY]
    records = read_records(run_dir)
    suite = sum(r.duration for r in records)
    if records:
        append_phase(run_dir, "suite", suite)
    wall = time.monotonic() - config.stash.get(STARTED_KEY, time.monotonic())
    summary = summary_mod.summarize(run_dir, wall=wall, issues=known_issues(config))
    terminalreporter.section("kernel-lab")
    for line in summary_mod.summary_lines(summary):
        terminalreporter.write_line(line)
    baseline = _vng_baseline(config)
    for line in summary_mod.slow_boots(run_dir, **({"vng_s": baseline} if baseline else {})):
        terminalreporter.write_line(line)


def _vng_baseline(config: pytest.Config) -> float | None:
    """This host's `vng --exec true` time, if `nox -s bench` measured it."""
    path = cache_root(config_of(config).cache) / "bench" / "baseline.json"
    try:
        return float(json.loads(path.read_text())["vng_exec_true_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
