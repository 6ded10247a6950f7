"""Real runs: fetch a Debian kernel, boot it under QEMU, run suites through `lab run`.

These are the lab's end-to-end tests: a real kernel, a real QEMU, a real SSH
session and real syscalls.  Each `lab run` boots one VM (about 15-25 s under TCG).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from labrun import SCENARIOS, lab_run

from lab.results.claims import NOT_RUN, audit, load_catalogue
from lab.results.record import Record

pytestmark = [pytest.mark.vm, pytest.mark.network]


def test_aio_suite_passes_on_debian_kernel(tmp_path: Path) -> None:
    run = lab_run(tmp_path, "--suite", str(SCENARIOS / "aio"))
    out, run_dir = run.out, run.run_dir
    assert run.returncode == 0, out[-5000:]
    recs = run.records()
    assert len(recs) >= 90
    assert {r["verdict"] for r in recs} == {"PASS"}
    assert all(r["kernel"]["release"].startswith("7.2.") for r in recs)
    assert all(r["kernel"]["config_hash"] for r in recs)
    assert all(r["claim"] for r in recs)
    deviations = {note for r in recs for note in r["deviations"]}
    assert any("IOCB_CMD_NOOP" in d for d in deviations)
    # The spec audit: every AIO claim is listed in the run (claims.json), each one the
    # suite checks was decided, and the deviations are the ones the claims data expects.
    catalogue = load_catalogue(run_dir)
    assert catalogue is not None
    report = audit([Record(**r) for r in recs], catalogue)
    counts = report["counts"]
    assert counts["not_checkable"] >= 10 and counts["failed"] == 0, counts
    not_run = {r["id"] for r in report["claims"] if r["verdict"] == NOT_RUN}
    assert not_run == {"io_submit.enosys", "io_destroy.enosys", "io_cancel.enosys",
                       "aio.enosys"}, not_run
    assert not report["uncatalogued"], report["uncatalogued"]
    for row in report["claims"]:
        if row["expected_deviation"] and row["verdict"] != NOT_RUN:
            assert row["deviations"] == [row["expected_deviation"]], row["id"]
    # The waits were seen in the kernel: D state in io_destroy, a signal into io_submit.
    by_name = run.by_name()
    assert by_name["test_destroy_waits_in_d_state"]["data"]["destroy"]["blocked"]["state"] == "D"
    capacity = by_name["test_ring_full_at_its_exact_capacity"]["data"]["capacity"]
    assert capacity["in_flight_at_eagain"] == capacity["expected"]
    # The destroy-waits scenario measured I/O in flight and a destroy that waited for it.
    waits = next(r for r in recs if "waits_for_inflight" in r["test"])
    assert waits["data"]["pending_at_destroy"] > 0
    # The run directory holds everything a person needs afterwards.
    for name in ("junit.xml", "command.txt", "summary.json", "phases.jsonl"):
        assert (run_dir / name).exists(), name
    console = next(run_dir.glob("console-*.log")).read_text(errors="replace")
    assert "Linux version 7.2" in console
    assert "kernel-lab: guest ready" in console
    assert "lab run --kernel debian:7.2" in (run_dir / "command.txt").read_text()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["counts"]["PASS"] == len(recs)
    assert summary["claims"]["checked"] == counts["checked"] and summary["claims"]["catalogue"]
    assert "claims: " in out and " not checkable from userspace" in out
    assert {"fetch", "boot", "agent", "suite"} <= set(summary["phases"])
    assert "spec deviations:" in out and "run directory:" in out
    # No VM directory (keys, NVMe images) is left behind.
    assert not [p for p in run_dir.iterdir() if p.is_dir()]


FAILING_SUITE = '''
from typing import Any


def test_passes(agent: Any) -> None:
    assert agent.errno_of("aio.destroy", ctx=0) == "EINVAL"


def test_wrong_expectation_fails(agent: Any) -> None:
    assert agent.errno_of("aio.destroy", ctx=0) == "EBADF"


def test_kernel_warning_fails_the_test(agent: Any) -> None:
    # A WARNING-format line in the kernel log during the test must fail it.
    agent.call("sys.kmsg_write", level=4,
               text="WARNING: CPU: 0 PID: 1 at fs/aio.c:1234 io_destroy+0x10/0x20")
'''


def test_failures_and_splats_give_exit_1_and_records(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_mixed.py").write_text(textwrap.dedent(FAILING_SUITE))
    run = lab_run(tmp_path, "--suite", str(suite))
    assert run.returncode == 1, run.out[-4000:]
    by_name = run.by_name()
    assert by_name["test_passes"]["verdict"] == "PASS"
    assert by_name["test_wrong_expectation_fails"]["verdict"] == "FAIL"
    splat = by_name["test_kernel_warning_fails_the_test"]
    assert splat["verdict"] == "FAIL"
    assert splat["splats"][0]["kind"] == "WARNING"
    assert "io_destroy" in splat["splats"][0]["title"]
    assert "kernel splat during the test" in run.out
