"""Folding pytest reports into records, and the guest's retry after a text-patching oops."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lab.kernel.artifact import Kernel
from lab.results.verdict import Diagnosis
from lab.run.records import to_record
from lab.vm import session
from lab.vm.vm import VmConfig


def _report(when: str, outcome: str, props: list[tuple[str, Any]]) -> pytest.TestReport:
    return pytest.TestReport(nodeid="t::x", location=("t", 1, "x"), keywords={},
                             outcome=outcome, longrepr=None, when=when,
                             user_properties=props)


def test_an_inconclusive_pass_is_inconclusive_and_a_failure_stays_a_failure() -> None:
    props = [("lab_inconclusive", "the calls overlapped in 0 of 100 rounds")]
    passed = [_report(w, "passed", props) for w in ("setup", "call", "teardown")]
    rec = to_record("t::x", passed)
    assert (rec.verdict, rec.reason) == ("INCONCLUSIVE", "the calls overlapped in 0 of 100 rounds")
    failed = [_report("setup", "passed", props), _report("call", "failed", props),
              _report("teardown", "passed", props)]
    assert to_record("t::x", failed).verdict == "FAIL"


def test_observed_and_deviations_are_kept_apart() -> None:
    props = [("lab_deviation", "the text says EFAULT"), ("lab_observed", "charged: 0 pages")]
    rec = to_record("t::x", [_report(w, "passed", props) for w in ("setup", "call", "teardown")])
    assert rec.deviations == ["the text says EFAULT"] and rec.observed == ["charged: 0 pages"]


def test_a_text_patching_oops_is_booted_again_single_threaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    k = Kernel(spec="k", release="7.2.0", image=tmp_path / "bzImage")
    m = session.Machine(k, run_dir=tmp_path, cache=tmp_path, config=VmConfig(accel="tcg"),
                        name="m", call_timeout=10, max_reboots=1)
    accels: list[str] = []

    def boot() -> None:
        accels.append(m.cfg.accel)
        if m.cfg.accel == "tcg":
            raise session.BootCrash(Diagnosis("CRASH", "x", [
                {"title": "Oops: int3 in sched_clock_cpu", "kind": "OOPS"}]))

    monkeypatch.setattr(m, "_start", boot)
    m.start()
    assert accels == ["tcg", "tcg-single"] and "single-threaded" in m.boot_note
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
