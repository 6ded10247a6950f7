"""The io_uring suites on a real booted Debian kernel: one `lab run`, one boot.

This is how the agent's ring code (mappings, SQE128/CQE32, provided buffer
rings, timed waits, creds.run) runs in CI against a kernel other than the
host's, with the verdicts checked rather than just the exit status.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lab.paths import cache_root

pytestmark = [pytest.mark.vm, pytest.mark.network]
KERNEL = "debian:7.2"
REPO = Path(__file__).resolve().parents[1]


def _records(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Records by test name with parameters ("test_x[debian:7.2-a]")."""
    recs = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    return {r["test"].split("::", 1)[1]: r for r in recs}


def test_uring_suite_on_debian_7_2(tmp_path: Path) -> None:
    results = tmp_path / "results"
    res = subprocess.run(
        [sys.executable, "-m", "lab.cli", "run", "--kernel", KERNEL, "--suite",
         str(REPO / "scenarios" / "uring"), "--results", str(results),
         "--cache", str(cache_root())],
        capture_output=True, text=True, timeout=1500, cwd=REPO,
    )
    out = res.stdout + res.stderr
    runs = sorted(results.glob("*"))
    assert len(runs) == 1, out[-3000:]
    recs = _records(runs[0])
    verdicts = {name: r["verdict"] for name, r in recs.items()}
    assert res.returncode == 0, (verdicts, out[-4000:])
    # 7.2 has every feature the suites need except what SKIP says, and nothing failed.
    assert set(verdicts.values()) <= {"PASS", "SKIP"}, verdicts
    by_prefix = {name.split("[")[0]: r for name, r in recs.items()}
    for name in ("test_identify_controller_admin", "test_passthrough_write_then_block_read",
                 "test_valid_multishot_to_nvme", "test_exemption_latched_at_creation",
                 "test_accounting_restored_after_drop_sequence",
                 "test_existing_ring_keeps_working"):
        assert by_prefix[name]["verdict"] == "PASS", (name, by_prefix[name]["reason"])
    # Multishot rules: every rejected combination posted its CQE with EINVAL on 7.2.
    rules = [r for n, r in recs.items() if n.startswith("test_flag_rules")]
    assert len(rules) == 5 and all(r["verdict"] == "PASS" for r in rules)
    assert all(r["data"]["cqes"][0]["res"] == -22 for r in rules)
    # The identify data and fio results are in the records.
    ident = by_prefix["test_identify_controller_admin"]["data"]["identify"]
    assert ident["model"] == "QEMU NVMe Ctrl"
    fio = by_prefix["test_fio_io_uring_cmd_on_generic_device"]
    if fio["verdict"] == "PASS":
        assert fio["data"]["fio"][0]["error"] == 0
    else:
        assert fio["verdict"] == "SKIP" and "fio" in fio["reason"]
