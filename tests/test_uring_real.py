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
    assert len(rules) == 3 and all(r["verdict"] == "PASS" for r in rules)
    assert all(r["data"]["cqes"][0]["res"] == -22 for r in rules)
    # The claims of the review and the multishot patch ran, each citing its claim; the
    # pre-6.18 answers are not applicable on 7.2.
    assert all(r["claim"] for r in recs.values() if r["verdict"] == "PASS")
    for name in ("test_getevents_waits_for_min_complete", "test_cq_overflow_keeps_completions",
                 "test_out_of_range_sq_index_is_dropped", "test_top_uring_cmd_flag_bits_refused",
                 "test_fixed_alone_is_accepted", "test_unknown_sqe_flag_is_einval"):
        assert by_prefix[name]["verdict"] == "PASS", (name, by_prefix[name]["reason"])
    nobufs = [r for n, r in recs.items() if n.startswith("test_fetch_without_buffers")]
    assert len(nobufs) == 2 and all(r["verdict"] == "PASS" for r in nobufs), nobufs
    assert all(r["data"]["ublk"]["first_final"]["errno"] == "ENOBUFS" for r in nobufs)
    before = [r for n, r in recs.items() if n.startswith("test_before_multishot")]
    assert before and all(r["verdict"] == "SKIP" for r in before)
    # ...as the kernel's own answer told, before their fixture wrote to the NVMe.
    assert all("has uring_cmd_multishot (probed: " in r["reason"] for r in before), before
    # The identify data and fio results are in the records.
    ident = by_prefix["test_identify_controller_admin"]["data"]["identify"]
    assert ident["model"] == "QEMU NVMe Ctrl"
    # fio is a host requirement (lab doctor): it ran, never a SKIP for being absent.
    fio = by_prefix["test_fio_io_uring_cmd_on_generic_device"]
    assert fio["verdict"] == "PASS" and fio["data"]["fio"][0]["error"] == 0, fio["reason"]
