"""The race suites on a real booted Debian kernel: one `lab run`, one boot, small loops.

Checks the verdicts and that every record carries the loop's outcome counts
and timings, so a run's evidence survives in results.jsonl.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from labrun import SCENARIOS, lab_run

pytestmark = [pytest.mark.vm, pytest.mark.network]
# Small loops: a smoke run of the machinery, not a hunt for races.
SMALL = "iterations=12,seconds=8,nbufs=8"


def test_race_suites_on_debian_7_2(tmp_path: Path) -> None:
    run = lab_run(tmp_path, "--suite", str(SCENARIOS / "races"),
                  env={"KERNEL_LAB_RACE": SMALL})
    out = run.out
    recs = run.by_name()
    verdicts = {name: r["verdict"] for name, r in recs.items()}
    assert verdicts == {
        "test_destroy_vs_submit": "PASS",
        "test_exactly_one_destroy_wins": "PASS",
        "test_setup_destroy_lookup": "PASS",
        "test_buffers_quiet_after_destroy": "PASS",
    }, (verdicts, out[-4000:])
    assert run.returncode == 0
    for name, rec in recs.items():
        race = rec["data"]["race"]
        # The small parameters reached the guest: at most 12 iterations (or rounds).
        assert 0 < race["iterations"] <= 12 or (name == "test_setup_destroy_lookup"
                                                and race["iterations"] >= 12), (name, race)
        assert race["elapsed_ns"] > 0 and race["rate_per_s"] > 0
        assert rec["kernel"]["release"].startswith("7.2"), rec["kernel"]
    dvs = recs["test_destroy_vs_submit"]["data"]["race"]
    assert dvs["submit_ok"] > 0 and dvs["late_completions"] == 0
    assert recs["test_exactly_one_destroy_wins"]["data"]["race"]["many_winners"] == 0
    assert recs["test_setup_destroy_lookup"]["data"]["aio_nr"]["after"] == \
        recs["test_setup_destroy_lookup"]["data"]["aio_nr"]["before"]
    buf = recs["test_buffers_quiet_after_destroy"]["data"]["race"]
    assert buf["pending_at_destroy"] > 0 and buf["modified_after_destroy"] == 0
