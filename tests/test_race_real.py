"""The race suites on a real booted Debian kernel: one `lab run`, one boot, small loops.

Checks the verdicts and that every record carries the loop's outcome counts
and timings, so a run's evidence survives in results.jsonl.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lab.paths import cache_root

pytestmark = [pytest.mark.vm, pytest.mark.network]
KERNEL = "debian:7.2"
REPO = Path(__file__).resolve().parents[1]
# Small loops: a smoke run of the machinery, not a hunt for races.
SMALL = "iterations=12,seconds=8,nbufs=8"


def _records(run_dir: Path) -> dict[str, dict[str, Any]]:
    recs = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    return {r["test"].split("::", 1)[1].split("[")[0]: r for r in recs}


def test_race_suites_on_debian_7_2(tmp_path: Path) -> None:
    results = tmp_path / "results"
    res = subprocess.run(
        [sys.executable, "-m", "lab.cli", "run", "--kernel", KERNEL, "--suite",
         str(REPO / "scenarios" / "races"), "--results", str(results),
         "--cache", str(cache_root())],
        capture_output=True, text=True, timeout=1200, cwd=REPO,
        env={**os.environ, "KERNEL_LAB_RACE": SMALL},
    )
    out = res.stdout + res.stderr
    runs = sorted(results.glob("*"))
    assert len(runs) == 1, out[-3000:]
    recs = _records(runs[0])
    verdicts = {name: r["verdict"] for name, r in recs.items()}
    assert verdicts == {
        "test_destroy_vs_submit": "PASS",
        "test_exactly_one_destroy_wins": "PASS",
        "test_setup_destroy_lookup": "PASS",
        "test_buffers_quiet_after_destroy": "PASS",
    }, (verdicts, out[-4000:])
    assert res.returncode == 0
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
