"""Folding pytest reports into records, and the guest's retry after a text-patching oops."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from lab.kernel.artifact import Kernel
from lab.results.evidence import KEY, Evidence, PhaseOutcome, encode
from lab.results.record import append_aftermath, read_interrupted, read_records
from lab.results.verdict import Diagnosis
from lab.run import guard, watch
from lab.run.config import make
from lab.run.keys import CONFIG_KEY, MARK_KEY, RUN_DIR_KEY
from lab.run.records import carried, phase_of, record_of, to_record, unfinished
from lab.vm import session
from lab.vm.accel import Accel
from lab.vm.vmconfig import VmConfig

PASSED = tuple(PhaseOutcome(w, "passed") for w in ("setup", "call", "teardown"))


def test_an_inconclusive_pass_is_inconclusive_and_a_failure_stays_a_failure() -> None:
    why = "the calls overlapped in 0 of 100 rounds"
    rec = record_of("t::x", Evidence(phases=PASSED, inconclusive=why))
    assert (rec.verdict, rec.reason) == ("INCONCLUSIVE", why)
    failed = (PASSED[0], PhaseOutcome("call", "failed", "assert 1 == 2"), PASSED[2])
    assert record_of("t::x", Evidence(phases=failed, inconclusive=why)).verdict == "FAIL"


def test_observed_and_deviations_are_kept_apart() -> None:
    rec = record_of("t::x", Evidence(phases=PASSED, deviations=("the text says EFAULT",),
                                     observed=("charged: 0 pages",)))
    assert rec.deviations == ["the text says EFAULT"] and rec.observed == ["charged: 0 pages"]


def test_the_record_is_made_of_the_evidence() -> None:
    """Every field of a record comes from its test's evidence; the call's time is its
    duration, and a splat's previous test leaves the data for the record's own field."""
    splat = {"kind": "WARNING", "fatal": False, "title": "WARNING in free_ioctx"}
    ev = Evidence(phases=(PhaseOutcome("setup", "passed", duration=2.0),
                          PhaseOutcome("call", "failed", "kernel splat", 1.25, hint="FAIL"),
                          PhaseOutcome("teardown", "passed", duration=3.0)),
                  splats=(splat,), excerpt="WARNING: CPU: 0", cell="debian:7.2",
                  kernel={"spec": "debian:7.2"}, claim="io_destroy waits",
                  data={"n": 3, "previous_test": "t::w"})
    rec = record_of("t::x", ev, repeat=2)
    assert (rec.verdict, rec.reason, rec.duration, rec.repeat) == (
        "FAIL", "kernel splat", 1.25, 2)
    assert (rec.splats, rec.excerpt, rec.cell, rec.kernel, rec.claim) == (
        [splat], "WARNING: CPU: 0", "debian:7.2", {"spec": "debian:7.2"}, "io_destroy waits")
    assert rec.data == {"n": 3} and rec.previous_test == "t::w"


def _report(when: str, outcome: str, props: list[tuple[str, Any]]) -> pytest.TestReport:
    return pytest.TestReport(nodeid="t::x", location=("t", 1, "x"), keywords={},
                             outcome=outcome, longrepr=None, when=when,
                             user_properties=props)


def test_the_last_reports_evidence_is_the_tests() -> None:
    """Each report carries the evidence so far: the teardown's is the test's whole; a
    report made without the lab's hook carries none, and its phases are the evidence."""
    early = Evidence(phases=PASSED[:1], cell="debian:7.2")
    whole = Evidence(phases=PASSED, cell="debian:7.2", inconclusive="no overlap")
    reports = [_report("setup", "passed", [(KEY, encode(early))]),
               _report("call", "passed", [("other", 1)]),
               _report("teardown", "passed", [(KEY, encode(whole)), ("lab_aftermath", {})])]
    assert carried(reports) == whole
    assert to_record("t::x", reports).verdict == "INCONCLUSIVE"
    bare = [_report("setup", "passed", []), _report("call", "failed", [])]
    assert [(p.when, p.outcome) for p in carried(bare).phases] == [("setup", "passed"),
                                                                   ("call", "failed")]
    assert to_record("t::x", bare).verdict == "FAIL"


def test_a_text_patching_oops_is_booted_again_single_threaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    k = Kernel(spec="k", release="7.2.0", image=tmp_path / "bzImage")
    said: list[str] = []
    m = session.Machine(k, run_dir=tmp_path, cache=tmp_path, config=VmConfig(accel="tcg"),
                        name="m", call_timeout=10, max_reboots=1, say=said.append,
                        accel=Accel("tcg", "KVM unusable: no /dev/kvm"))
    accels: list[str] = []

    def boot() -> None:
        accels.append(m.cfg.accel)
        if m.cfg.accel == "tcg":
            raise session.BootCrash(Diagnosis("CRASH", "x", [
                {"title": "Oops: int3 in sched_clock_cpu", "kind": "OOPS"}]))

    monkeypatch.setattr(m, "_start", boot)
    m.start()
    assert accels == ["tcg", "tcg-single"] and "single-threaded" in m.boot_note
    # Every later record says what it ran on and why; the user saw it happen.
    assert m.accel.name == "tcg-single" and m.accel.reason.startswith(
        "tcg-single after a text-patching oops under multi-threaded TCG (Oops: int3")
    assert said == ["the boot oopsed while patching kernel text (Oops: int3 in "
                    "sched_clock_cpu): booting again single-threaded"]
    # Any other boot crash is the kernel's, and stays one.
    m2 = session.Machine(k, run_dir=tmp_path, cache=tmp_path, config=VmConfig(accel="tcg"),
                         name="m2", call_timeout=10, max_reboots=1)

    def panic() -> None:
        raise session.BootCrash(Diagnosis("CRASH", "x", [{"title": "kernel panic: x"}]))

    monkeypatch.setattr(m2, "_start", panic)
    with pytest.raises(session.BootCrash):
        m2.start()


def test_the_summary_lists_inconclusive_tests_and_the_run_still_passes(tmp_path: Path) -> None:
    from lab.results.record import Record, append_record
    from lab.results.summary import summarize, summary_lines

    why = "the racing calls overlapped in 0 of 12 rounds"
    append_record(tmp_path, Record(test="s::race", verdict="INCONCLUSIVE", duration=1.0,
                                   reason=why))
    append_record(tmp_path, Record(test="s::claim", verdict="PASS", duration=1.0))
    summary = summarize(tmp_path)
    assert summary["inconclusive"] == [{"test": "s::race", "reason": why}]
    assert summary["exit_code"] == 0
    assert f"  - s::race: {why}" in summary_lines(summary)


def test_the_summary_spells_out_the_kernels_control_characters(tmp_path: Path) -> None:
    from lab.results.record import Record, append_record
    from lab.results.summary import summarize, summary_lines

    why = "splat \x1b]0;pwned\x07 in\tio_destroy\x9b"
    append_record(tmp_path, Record(test="s::race", verdict="INCONCLUSIVE", duration=1.0,
                                   reason=why))
    summary = summarize(tmp_path)
    assert summary["inconclusive"] == [{"test": "s::race", "reason": why}]  # raw in JSON
    assert "  - s::race: splat \\x1b]0;pwned\\x07 in\tio_destroy\\x9b" in \
        summary_lines(summary)


class _Item:
    """The one thing the SKIP relocation asks of a test item: where the test is."""

    def reportinfo(self) -> tuple[str, int, str]:
        return "/src/scenarios/enosys/test_enosys.py", 29, "test_x"


def _skipped(where: str) -> pytest.TestReport:
    return pytest.TestReport(nodeid="t::x", location=("t", 1, "x"), keywords={},
                             outcome="skipped", when="setup", user_properties=[],
                             longrepr=(where, 357, "Skipped: not applicable: CONFIG_AIO=y"))


def test_a_skip_the_lab_raised_points_at_the_test() -> None:
    """pytest's short summary shows where a skip was raised: the lab's hook, for every
    config SKIP (`SKIPPED [8] lab/run/plugin.py:357`), until it points at the test."""
    from lab.paths import REPO
    from lab.run.records import _skip_at_the_test

    for hook in ("lab/run/plugin.py", "lab/run/guard.py"):
        rep = _skipped(str(REPO / hook))
        _skip_at_the_test(_Item(), rep)  # type: ignore[arg-type]
        assert rep.longrepr == ("/src/scenarios/enosys/test_enosys.py", 30,
                                "Skipped: not applicable: CONFIG_AIO=y")
    # A skip the test raised itself already says where: left alone.
    rep = _skipped("/src/scenarios/aio/test_x.py")
    _skip_at_the_test(_Item(), rep)  # type: ignore[arg-type]
    assert rep.longrepr == ("/src/scenarios/aio/test_x.py", 357,
                            "Skipped: not applicable: CONFIG_AIO=y")


def test_records_carry_the_accelerator() -> None:
    accel = {"name": "tcg", "mode": "TCG, multi-threaded", "reason": "KVM unusable: no /dev/kvm"}
    rec = record_of("t::x", Evidence(phases=PASSED, accel=accel))
    assert rec.accel["reason"] == "KVM unusable: no /dev/kvm"


def test_the_summary_and_the_report_name_the_accelerator_and_why(tmp_path: Path) -> None:
    from lab.results import report
    from lab.results.record import Record, append_record
    from lab.results.summary import summarize, summary_lines

    tcg = {"name": "tcg", "mode": "TCG, multi-threaded",
           "reason": "KVM unusable: the probe boot hung (no kernel banner in 10 s)"}
    single = {"name": "tcg-single", "mode": "TCG, single-threaded",
              "reason": "tcg-single after a text-patching oops under multi-threaded TCG"}
    for test, accel in (("s::a", tcg), ("s::b", tcg), ("s::c", {})):
        append_record(tmp_path, Record(test=test, verdict="PASS", duration=1.0,
                                       cell="debian:7.2", accel=accel))
    summary = summarize(tmp_path)
    assert summary["accelerators"] == {"debian:7.2": [
        "TCG, multi-threaded: KVM unusable: the probe boot hung (no kernel banner in 10 s)"]}
    assert ("accelerator: TCG, multi-threaded: KVM unusable: the probe boot hung (no kernel "
            "banner in 10 s)") in summary_lines(summary)
    # A cell booted again single-threaded says both, in order; each cell its own line.
    append_record(tmp_path, Record(test="s::d", verdict="PASS", duration=1.0,
                                   cell="debian:7.2", accel=single))
    append_record(tmp_path, Record(test="s::a", verdict="PASS", duration=1.0,
                                   cell="debian:6.1", accel=tcg))
    lines = summary_lines(summarize(tmp_path))
    assert (f"accelerator [debian:7.2]: TCG, multi-threaded: {tcg['reason']}; then "
            f"TCG, single-threaded: {single['reason']}") in lines
    assert f"accelerator [debian:6.1]: TCG, multi-threaded: {tcg['reason']}" in lines
    html = report.render_html(report.context(report.load_run(tmp_path)))
    assert "TCG, single-threaded: tcg-single after a text-patching oops" in html


def test_a_slow_boot_says_where_its_time_went_without_benchmark_jargon(tmp_path: Path) -> None:
    from lab.results.record import append_timeline
    from lab.results.summary import slow_boots

    append_timeline(tmp_path, [{"vm": "main-7.2", "event": e, "host_s": t, "guest_s": None}
                               for e, t in (("qemu", 0.0), ("kernel", 1.5), ("init", 5.0),
                                            ("ssh", 13.0), ("hello", 15.1))])
    [line] = slow_boots(tmp_path)
    assert line == ("slow boot main-7.2: 15.1 s to the agent (a bare virtme-ng boot takes "
                    "5.2 s here); longest steps: init -> ssh 8.0 s, kernel -> init 3.5 s, "
                    "ssh -> hello 2.1 s")
    assert slow_boots(tmp_path, vng_s=20.0) == []


GOLDEN = Path(__file__).parent / "golden" / "splats"


class _Console:
    """The seam the guard reads a console through (lab.vm.session.Machine)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def console_since(self, offset: int) -> str:
        return self.text[offset:]


def _interrupt(tmp_path: Path, console: str, *, offset: int = 0) -> dict[str, Any]:
    """Ctrl-C in the call of a test whose guest's console holds ``console``: what the
    guard keeps of it (lab.run.guard)."""
    run_dir = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
    run_dir.mkdir()
    config = SimpleNamespace(stash=pytest.Stash())
    config.stash[RUN_DIR_KEY] = run_dir
    item = SimpleNamespace(config=config, stash=pytest.Stash(),
                           nodeid="suite/t.py::test_hangs[debian:7.2-repeat2]@c0s1")
    item.stash[guard.MACHINE_KEY] = _Console(console)
    item.stash[MARK_KEY] = watch.Mark(console_offset=offset, seq=0, taint=0, ts_us=0)
    phase = guard._diagnosing(item, "call")  # type: ignore[arg-type]
    next(phase)
    with pytest.raises(KeyboardInterrupt):
        phase.throw(KeyboardInterrupt())
    assert item.stash[guard.INTERRUPTED_KEY] is True
    (entry,) = read_interrupted(run_dir)
    assert entry["nodeid"] == item.nodeid and entry["phase"] == "call"
    assert 0 <= entry["seconds"] < 60
    return entry


def _record(entry: dict[str, Any] | None) -> Any:
    return unfinished("suite/t.py::test_hangs[debian:7.2]", cell="debian:7.2", kernel={},
                      repeat=2, why="interrupted (Ctrl-C)", started=True, interrupted=entry)


def test_ctrl_c_in_a_crashed_or_hung_test_keeps_its_evidence(tmp_path: Path) -> None:
    """A test the user interrupted was NOTRUN "not finished", and the splat that made it
    hang was lost: now the record says how long its call ran, and a splat on the
    console since the test began is its verdict (never a PASS)."""
    panic = (GOLDEN / "debian72_sysrq_panic.log").read_text()
    crashed = _record(_interrupt(tmp_path, panic))
    assert crashed.verdict == "CRASH" and crashed.repeat == 2
    assert crashed.reason.startswith("CRASH: kernel splat while the test ran (kernel panic: "
                                     "sysrq triggered crash); interrupted (Ctrl-C) after ")
    assert "in its call" in crashed.reason and "sysrq" in crashed.excerpt
    assert crashed.splats and crashed.data["interrupted"]["phase"] == "call"
    hung = _record(_interrupt(tmp_path, (GOLDEN / "hung_task_nbd.log").read_text()))
    assert hung.verdict == "HANG" and "blocked for more than" in hung.excerpt
    # A splat before the test's mark is another test's: nothing of this one's.
    quiet = _interrupt(tmp_path, panic + "\n", offset=len(panic))
    assert "splats" not in quiet
    notrun = _record(quiet)
    assert notrun.verdict == "NOTRUN" and notrun.reason.startswith(
        "not finished: interrupted (Ctrl-C) after ") and notrun.reason.endswith(" in its call")
    # Without the guard's note (a test that never began): as before.
    assert _record(None).reason == "not finished: interrupted (Ctrl-C)"
    assert unfinished("t", cell="", kernel={}, repeat=0, why="x", started=False).reason == \
        "not run: x"


def _recorder(tmp_path: Path) -> Any:
    from lab.run.records import Recorder

    cfg = make({"known_issues": tmp_path / "none.toml", "progress_interval": 3600.0})
    config = SimpleNamespace(
        stash={RUN_DIR_KEY: tmp_path, CONFIG_KEY: cfg},
        pluginmanager=SimpleNamespace(getplugin=lambda name: None,
                                      get_plugin=lambda name: None))
    (tmp_path / "none.toml").write_text("")
    return Recorder(config)  # type: ignore[arg-type]


def test_the_recorder_reads_the_runs_configuration(tmp_path: Path) -> None:
    """The known issues, the progress interval and the cache (the benchmark's vng time)
    come from the run's configuration (lab.run.config), not from pytest's raw options:
    the configuration is the one checked, and what `lab run` handed over."""
    from lab.run.records import _vng_baseline, known_issues

    issues = tmp_path / "issues.toml"
    expires = dt.date.today() + dt.timedelta(days=30)
    issues.write_text('[[issue]]\ntest = "scenarios/aio/t.py::test_x"\ncell = "debian:7.2"\n'
                      f'verdicts = ["FAIL"]\nurl = "https://example.org/1"\nexpires = {expires}\n')
    cache = tmp_path / "cache"
    (cache / "bench").mkdir(parents=True)
    (cache / "bench" / "baseline.json").write_text('{"vng_exec_true_s": 4.5}')
    cfg = make({"known_issues": issues, "progress_interval": 42.0, "cache": cache})

    def raw(name: str, default: Any = None) -> Any:
        raise AssertionError(f"read pytest's option {name}, not the run's configuration")

    config: Any = SimpleNamespace(
        stash={RUN_DIR_KEY: tmp_path, CONFIG_KEY: cfg}, getoption=raw,
        pluginmanager=SimpleNamespace(getplugin=lambda name: None,
                                      get_plugin=lambda name: None))
    assert [i.url for i in known_issues(config)] == ["https://example.org/1"]
    assert _vng_baseline(config) == 4.5
    from lab.run.records import Recorder
    assert Recorder(config).progress.interval == 42.0


def _reports(nodeid: str, outcome: str = "passed", *,
             setup: list[tuple[str, Any]] | None = None,
             teardown: list[tuple[str, Any]] | None = None,
             pending: bool = False) -> list[pytest.TestReport]:
    """A test's three reports, as the lab's hook makes them (``pending``: its window
    closed cleanly, its aftermath comes with a later report)."""
    out: list[pytest.TestReport] = []
    phases: tuple[PhaseOutcome, ...] = ()
    for when, props in (("setup", setup or []), ("call", []), ("teardown", teardown or [])):
        rep = pytest.TestReport(
            nodeid=nodeid, location=(nodeid, 1, nodeid), keywords={}, when=when,
            outcome=outcome if when == "call" else "passed", user_properties=props,
            longrepr=("t", 1, "Skipped: n/a") if outcome == "skipped" and when == "call"
            else None)
        phases = (*phases, phase_of(rep))
        so_far = Evidence(phases=phases, aftermath_pending=pending and when == "teardown")
        rep.user_properties.append((KEY, encode(so_far)))
        out.append(rep)
    return out


def test_what_the_kernel_printed_after_a_test_is_charged_to_it(tmp_path: Path) -> None:
    """A test whose window closed cleanly is held until a later report of its worker says
    what the kernel printed after it: a splat there makes it FAIL (a SKIP too), a guest
    that died makes it CRASH, and a quiet aftermath keeps its verdict."""
    from lab.run.records import AFTERMATH

    rec = _recorder(tmp_path)
    warn = {"title": "WARNING in free_ioctx", "kind": "WARNING", "fatal": False}
    for rep in _reports("t::a", pending=True):
        rec.pytest_runtest_logreport(rep)
    assert not (tmp_path / "results.jsonl").exists()  # held: its aftermath is not known
    splat_after = {"test": "t::a", "verdict": "FAIL", "where": "between tests",
                   "reason": "kernel splat after the test's window closed (between tests): "
                             "WARNING in free_ioctx", "splats": [warn]}
    for rep in _reports("t::b", "skipped", setup=[(AFTERMATH, splat_after)], pending=True):
        rec.pytest_runtest_logreport(rep)
    died = {"test": "t::b", "verdict": "CRASH", "where": "between tests",
            "reason": "CRASH: the guest died after the test, before the next one began"}
    for rep in _reports("t::c", setup=[(AFTERMATH, died)], pending=True):
        rec.pytest_runtest_logreport(rep)
    quiet = {"test": "t::c", "verdict": "", "where": "as the guest was stopped", "reason": ""}
    for rep in _reports("t::d", teardown=[(AFTERMATH, quiet)]):
        rec.pytest_runtest_logreport(rep)
    for rep in _reports("t::e", pending=True):
        rec.pytest_runtest_logreport(rep)
    rec.pytest_sessionfinish(SimpleNamespace())
    got = {r.test: r for r in read_records(tmp_path)}
    assert {t: r.verdict for t, r in got.items()} == {
        "t::a": "FAIL", "t::b": "CRASH", "t::c": "PASS", "t::d": "PASS", "t::e": "PASS"}
    assert got["t::a"].reason.startswith("kernel splat after the test's window closed")
    assert got["t::a"].splats == [warn] and got["t::a"].data["after_test"]["verdict"] == "FAIL"
    assert got["t::b"].reason.startswith("CRASH: the guest died after the test")
    assert "after_test" not in got["t::c"].data


def test_a_workers_aftermath_no_report_carried_is_folded_in_from_the_run_directory(
        tmp_path: Path) -> None:
    """Under xdist a stop (pytest.exit) makes no report: the worker hands its queued
    entries over through the run directory, and the controller's Recorder charges them,
    so a guest that died after t::a is t::a's CRASH even then."""
    rec = _recorder(tmp_path)
    for rep in _reports("t::a", pending=True):
        rec.pytest_runtest_logreport(rep)
    append_aftermath(tmp_path, {
        "test": "t::a", "verdict": "CRASH", "where": "between tests",
        "reason": "CRASH: the guest died after the test, before the next one began"})
    rec.pytest_sessionfinish(SimpleNamespace())
    got = {r.test: r for r in read_records(tmp_path)}
    assert got["t::a"].verdict == "CRASH", got
    assert got["t::a"].data["after_test"]["where"] == "between tests"
