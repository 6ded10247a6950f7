"""The io_uring suites on a real booted Debian kernel: one `lab run`, one boot.

This is how the agent's ring code (mappings, SQE128/CQE32, provided buffer
rings, timed waits, creds.run) runs in CI against a kernel other than the
host's, with the verdicts checked rather than just the exit status.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from labrun import SCENARIOS, lab_run

pytestmark = [pytest.mark.vm, pytest.mark.network]


def test_uring_suite_on_debian_7_2(tmp_path: Path) -> None:
    run = lab_run(tmp_path, "--suite", str(SCENARIOS / "uring"))
    out = run.out
    recs = run.by_name(params=True)
    verdicts = {name: r["verdict"] for name, r in recs.items()}
    assert run.returncode == 0, (verdicts, out[-4000:])
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
    # fio is a host requirement (lab doctor): it ran, never a SKIP for being absent.
    fio = by_prefix["test_fio_io_uring_cmd_on_generic_device"]
    assert fio["verdict"] == "PASS" and fio["data"]["fio"][0]["error"] == 0, fio["reason"]
