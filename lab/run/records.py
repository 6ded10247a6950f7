"""From pytest's reports to the lab's records: one per test, and one for every test the
run did not reach.

The hints added to each phase's report say what the lab knows that pytest does not
(a diagnosis, a fatal splat, where an error came from); ``to_record`` folds a test's
reports into its record with lab.results.verdict.  The Recorder (controller only, so
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
from collections.abc import Generator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from lab.errors import EXIT_INTERRUPTED, InfraError, UserError
from lab.paths import REPO, cache_root
from lab.results import known as known_mod
from lab.results import matrix as matrix_file
from lab.results import nvme, reproduce
from lab.results import record as results
from lab.results import summary as summary_mod
from lab.results.record import Record
from lab.results.verdict import PhaseOutcome, Verdict, fold, worst
from lab.run import aftermath
from lab.run.cells import plain_nodeid, repeat_of
from lab.run.guard import MACHINE_KEY
from lab.run.keys import (
    ASSESSMENT_KEY,
    DIAGNOSIS_KEY,
    MACHINES_KEY,
    RUN_DIR_KEY,
    STARTED_KEY,
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
    props = rep.user_properties
    if rep.skipped:
        _skip_at_the_test(item, rep)
    hint = _hint(item, call)
    if hint:
        props.append(("lab_hint", hint))
    exc = call.excinfo
    if exc is not None and exc.errisinstance(AgentOpError):
        assert isinstance(exc.value, AgentOpError)
        props.append(("lab_data", {"guest_traceback": exc.value.guest_traceback}))
    if exc is not None and exc.errisinstance(BootCrash):
        assert isinstance(exc.value, BootCrash)
        boot = exc.value.diagnosis
        props += [("lab_splats", boot.splats), ("lab_excerpt", boot.excerpt),
                  ("lab_reason", f"CRASH: the kernel crashed during boot: {boot.summary}")]
    if call.when == "setup":
        _identify(item, props)
    if call.when == "teardown":
        _evidence(item, rep)
        machine = item.stash.get(MACHINE_KEY, None)
        if machine is not None and machine.closed is not None and \
                machine.closed.test == item.nodeid:
            props.append((AFTERMATH_PENDING, True))  # judged with a later report
    props += [(AFTERMATH, entry) for entry in aftermath.drain(item.config)]
    return rep


AFTERMATH, AFTERMATH_PENDING = "lab_aftermath", "lab_aftermath_pending"


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
             **({"kmsg_lost": entry["kmsg_lost"]} if entry.get("kmsg_lost") else {})}
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


def _identify(item: pytest.Item, props: list[tuple[str, Any]]) -> None:
    cell = item_cell(item)
    if cell is not None:
        props.append(("lab_cell", cell.label))
        # The guest this test ran on, or the cell's guest on this worker for a test
        # skipped before it needed one.
        machine = item.stash.get(MACHINE_KEY, None) or \
            item.config.stash.get(MACHINES_KEY, {}).get(cell.label)
        if machine is not None:
            props.append(("lab_accel", machine.accel.to_dict()))
    k = item_kernel(item)
    if k is not None:
        identity = k.identity()
        machine = item.stash.get(MACHINE_KEY, None)
        if k.config is None and machine is not None and machine.facts is not None:
            # Learnt from the guest: say so, and hash what it said.
            identity.update(config_source=machine.facts.source,
                            config_hash=machine.facts.digest)
        props.append(("lab_kernel", identity))
    claim = item.get_closest_marker("claim")
    if claim is not None and claim.args:
        props.append(("lab_claim", str(claim.args[0])))


def _evidence(item: pytest.Item, rep: pytest.TestReport) -> None:
    """What the guard found, attached once the test's window has closed."""
    props = rep.user_properties
    diag = item.stash.get(DIAGNOSIS_KEY, None)
    seen = item.stash.get(ASSESSMENT_KEY, None)
    data: dict[str, Any] = dict(lab_data(item))
    if diag is not None:
        props += [("lab_splats", diag.splats), ("lab_excerpt", diag.excerpt),
                  ("lab_reason", f"{diag.verdict}: {diag.summary}")]
        rep.sections.append(("kernel-lab diagnosis",
                             f"{diag.verdict}: {diag.summary}\n{diag.excerpt}"))
    elif seen is not None and seen.splats:
        props.append(("lab_splats", [s.to_dict() for s in seen.splats]))
    if data:
        props.append(("lab_data", data))


def to_record(nodeid: str, reports: list[pytest.TestReport], *, repeat: int = 0) -> Record:
    """One test's reports (setup, call, teardown) folded into its verdict record
    (``repeat``: which repetition of the test it is, 0 when not repeated)."""
    props: dict[str, Any] = {"lab_deviation": [], "lab_observed": [], "lab_data": {}}
    hints: list[str] = []
    seen: set[str] = set()
    for rep in reports:
        for key, value in rep.user_properties:
            # Reports share the item's user_properties list: take each entry once.
            tag = f"{key}|{value!r}"
            if tag in seen:
                continue
            seen.add(tag)
            if key in ("lab_deviation", "lab_observed"):
                props[key].append(value)
            elif key == "lab_data":
                props["lab_data"].update(value)
            elif key == "lab_hint":
                hints.append(str(value))
            elif key in (AFTERMATH, AFTERMATH_PENDING):
                continue  # the Recorder's (another test's aftermath, or this one's later)
            else:
                props[key] = value
    verdict, reason = fold([_phase(rep) for rep in reports], hints=hints,
                           reason=props.get("lab_reason", ""))
    if verdict == Verdict.PASS and "lab_inconclusive" in props:
        verdict, reason = Verdict.INCONCLUSIVE.value, str(props["lab_inconclusive"])
    data = props["lab_data"]
    # Emulated NVMe timed out in the test's window (a loaded host): that, not the
    # assertion or the wait, is the story, and the driver's lines are the evidence.
    verdict, reason = nvme.judged(verdict, reason, data.get("nvme_events") or [],
                                  splats=props.get("lab_splats", []))
    return Record(
        test=nodeid,
        verdict=verdict,
        duration=round(sum(r.duration for r in reports if r.when == "call"), 3),
        kernel=props.get("lab_kernel", {}),
        cell=props.get("lab_cell", ""),
        reason=reason,
        claim=props.get("lab_claim", ""),
        deviations=props["lab_deviation"],
        observed=props["lab_observed"],
        splats=props.get("lab_splats", []),
        data=data,
        excerpt=props.get("lab_excerpt", ""),
        previous_test=str(data.pop("previous_test", "")),
        accel=props.get("lab_accel", {}),
        repeat=repeat,
    )


def _phase(rep: pytest.TestReport) -> PhaseOutcome:
    if rep.skipped:
        longrepr = rep.longrepr
        message = str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr)
    elif rep.failed:
        message = _first_line(rep)
    else:
        message = ""
    return PhaseOutcome(when=rep.when, outcome=rep.outcome, message=message,
                        duration=rep.duration)


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
                                 interval=float(config.getoption("lab_progress_interval")))

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
        props = [(key, value) for key, value in report.user_properties]
        if report.when == "teardown":
            del self.pending[report.nodeid]
            self.written.add(report.nodeid)
            self.held[report.nodeid] = to_record(plain_nodeid(report.nodeid), reports,
                                                 repeat=repeat_of(report.nodeid))
        for key, value in props:
            # Reports share their item's properties: an entry comes again, once its
            # test is written it is ignored.
            if key == AFTERMATH and isinstance(value, dict) and value.get("test") in self.held:
                self._write(charge(self.held.pop(str(value["test"])), value))
        if report.when == "teardown" and report.nodeid in self.held and \
                (AFTERMATH_PENDING, True) not in props:
            self._write(self.held.pop(report.nodeid))

    def _write(self, record: Record) -> None:
        # A failure that known-issues.toml expects is XFAIL from the start.
        record = known_mod.apply(record, self.known, today=datetime.date.today())
        results.append_record(self.run_dir, record)
        self.progress.ended(record)

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        """Ctrl-C: the run stops with 130, and what ran is kept.

        The session then ends as usual: the guests are stopped, every test without a
        record gets a NOTRUN one naming this reason, and the summary, JUnit and report
        are written.
        """
        if excinfo.errisinstance(KeyboardInterrupt):  # pytest.exit() comes here too
            results.write_stop(self.run_dir, exit_code=EXIT_INTERRUPTED,
                               reason="interrupted (Ctrl-C)")

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # Entries no report carried (the run stopped before the next test's report):
        # this process's own, then the rest as they are.
        for entry in [*aftermath.drain(self.config), *results.read_aftermath(self.run_dir)]:
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
        stop = results.read_stop(self.run_dir)
        why = stop["reason"] if stop else "the run ended before it"
        m = matrix_file.read(self.run_dir)
        cells = {test: cell for cell, test in m.assigned} if m else {}
        specs = {str(c["label"]): c for c in m.cells} if m else {}
        # What each test Ctrl-C cut short had shown (lab.run.guard), by test and repetition.
        cut = {(plain_nodeid(str(e["nodeid"])), repeat_of(str(e["nodeid"]))): e
               for e in results.read_interrupted(self.run_dir)}
        for nodeid in missing:
            test, repeat = plain_nodeid(nodeid), repeat_of(nodeid)
            cell = cells.get(test, "")
            spec = self.expected[nodeid] or specs.get(cell, {}).get("spec")
            record = unfinished(test, cell=cell, kernel={"spec": spec} if spec else {},
                                repeat=repeat, why=why, started=nodeid in self.pending,
                                interrupted=cut.get((test, repeat)))
            results.append_record(self.run_dir, known_mod.apply(
                record, self.known, today=datetime.date.today()))


# Splat kinds that say a task or CPU made no progress: an interrupted test that shows one
# hung.
_HANG_KINDS = frozenset({"HUNG_TASK", "SOFT_LOCKUP", "RCU_STALL", "WQ_LOCKUP"})


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
    elif any(s.get("kind") in _HANG_KINDS for s in splats):
        verdict = Verdict.HANG.value
    else:
        verdict = Verdict.FAIL.value
    title = str(splats[0].get("title") or splats[0].get("kind") or "?")
    return replace(base, verdict=verdict, duration=seconds, splats=splats, data=data,
                   excerpt=str(splats[0].get("excerpt") or ""),
                   reason=f"{verdict}: kernel splat while the test ran ({title}); {after}")


def known_issues(config: pytest.Config) -> list[known_mod.KnownIssue]:
    """The run's known issues (--lab-known-issues, else the project's file)."""
    path = config.getoption("lab_known_issues")
    try:
        return known_mod.load(Path(path) if path else known_mod.path_for(None))
    except UserError as exc:
        raise pytest.UsageError(str(exc)) from None


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[STARTED_KEY] = time.monotonic()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or RUN_DIR_KEY not in config.stash:
        return
    run_dir = config.stash[RUN_DIR_KEY]
    records = results.read_records(run_dir)
    suite = sum(r.duration for r in records)
    if records:
        results.append_phase(run_dir, "suite", suite)
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
    path = cache_root(config.getoption("lab_cache")) / "bench" / "baseline.json"
    try:
        return float(json.loads(path.read_text())["vng_exec_true_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
