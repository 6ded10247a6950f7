"""A test's evidence from the scenario's fixtures to its record, through a real `lab run`
with two xdist workers, without booting a guest.

The tests take only the ``kernel`` fixture (the cached debian:7.2) and the fixtures that
note what a test found (``record``, ``deviation``, ``observed``, ``inconclusive``), so
every record is made on the controller from what a worker's reports carried.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab.paths import cache_root

pytestmark = pytest.mark.network
REPO = Path(__file__).resolve().parents[1]
SUITE = '''
import pytest


@pytest.mark.claim("io_submit returns EINVAL for a bad context")
@pytest.mark.parametrize("n", range(3))
def test_undecided(kernel, n, record, deviation, observed, inconclusive):
    record("overlap", {"rounds": 100, "overlapped": n, "by_memlock": {4096: "ok"}})
    deviation("the text says EFAULT")
    deviation("the text says EFAULT")  # said twice, kept once
    observed(f"charged: {n} pages")
    inconclusive(f"the racing calls overlapped in {n} of 100 rounds")


@pytest.mark.parametrize("n", range(3))
def test_undecided_but_failed(kernel, n, inconclusive):
    inconclusive("never raced")
    assert n < 0, "EINVAL, not EBADF"


@pytest.mark.parametrize("n", range(3))
def test_decided(kernel, n, record):
    record("n", n)


def test_skipped(kernel, inconclusive):
    inconclusive("never raced")
    pytest.skip("needs IORING_OP_X")
'''


def test_what_a_test_noted_reaches_its_record_across_workers(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_notes.py").write_text(SUITE)
    out = tmp_path / "results"
    res = subprocess.run([sys.executable, "-m", "lab.cli", "run", "--kernel", "debian:7.2",
                          "--suite", str(suite), "--results", str(out), "--cache",
                          str(cache_root()), "--workers", "2"],
                         capture_output=True, text=True, cwd=REPO, timeout=900)
    assert res.returncode == 1, (res.stdout + res.stderr)[-3000:]  # the FAILs
    (run_dir,) = out.iterdir()
    recs = {r["test"].split("::")[1]: r for r in
            map(json.loads, (run_dir / "results.jsonl").read_text().splitlines())}
    assert {name: r["verdict"] for name, r in recs.items()} == {
        **{f"test_undecided[debian:7.2-{n}]": "INCONCLUSIVE" for n in range(3)},
        **{f"test_undecided_but_failed[debian:7.2-{n}]": "FAIL" for n in range(3)},
        **{f"test_decided[debian:7.2-{n}]": "PASS" for n in range(3)},
        "test_skipped[debian:7.2]": "SKIP"}
    one = recs["test_undecided[debian:7.2-2]"]
    assert one["reason"] == "the racing calls overlapped in 2 of 100 rounds"
    assert one["data"] == {"overlap": {"rounds": 100, "overlapped": 2,
                                       "by_memlock": {"4096": "ok"}}}
    assert one["deviations"] == ["the text says EFAULT"]
    assert one["observed"] == ["charged: 2 pages"]
    assert one["claim"] == "io_submit returns EINVAL for a bad context"
    assert one["cell"] == "debian:7.2" and one["kernel"]["spec"] == "debian:7.2"
    assert one["kernel"]["release"].startswith("7.2")
    assert recs["test_undecided_but_failed[debian:7.2-0]"]["reason"].startswith(
        "AssertionError: EINVAL, not EBADF")
    assert recs["test_skipped[debian:7.2]"]["reason"] == "needs IORING_OP_X"
    assert recs["test_decided[debian:7.2-1]"]["data"] == {"n": 1}
    # The records were made from what two workers' reports carried.
    assert "created: 2/2 workers" in res.stdout, res.stdout[-3000:]
