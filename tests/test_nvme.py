"""The NVMe driver's timeouts and resets (drivers/nvme/host/pci.c, core.c) on golden
lines: a test in whose window they came is INFRA with the evidence, not a FAIL or HANG,
and bisection learns nothing from it (nor from an XFAIL)."""

from __future__ import annotations

from typing import Any

import pytest

from lab.bisect.classify import BadIf, Observed, judge
from lab.bisect.decision import Outcome
from lab.results import nvme
from lab.results.evidence import Evidence, PhaseOutcome
from lab.run.records import record_of

# What the driver prints, as 6.1 and 7.2 print it (nvme_timeout, nvme_warn_reset,
# nvme_reset_ctrl's callers, the abort's completion).
DRIVER = [
    "nvme nvme0: I/O tag 12 (100c) opcode 0x2 (Read) QID 1 timeout, aborting "
    "req_op:READ(0) size:4096",
    "nvme nvme0: I/O tag 7 (0007) opcode 0x1 (Write) QID 2 timeout, reset controller",
    "nvme nvme0: I/O tag 3 (1003) QID 1 timeout, disable controller",
    "nvme nvme0: I/O tag 9 (2009) QID 0 timeout, completion polled",
    "nvme nvme0: I/O 12 QID 1 timeout, aborting",  # 6.1's words
    "nvme nvme0: I/O 12 QID 1 timeout, reset controller",
    "nvme nvme0: Abort status: 0x371",
    "nvme nvme0: controller is down; will reset: CSTS=0xffffffff, PCI_STATUS=0x10",
    "nvme nvme0: Disabling device after reset failure: -19",
    "nvme nvme1: resetting controller",
    "nvme nvme0: resetting controller due to persistent internal error",
]
NOT_DRIVER = [
    "nvme nvme0: 2/0/0 default/read/poll queues",
    "nvme nvme0: pci function 0000:00:04.0",
    "nvme0n1: Invalid Command Opcode(0x81) @ LBA 0, 1 blocks, ... (sct 0x0 / sc 0x1) DNR",
    "kernel-lab: begin scenarios/uring/test_nvme.py::test_timeout_is_etime",
    "io_uring: timeout fired",
]


@pytest.mark.parametrize("line", DRIVER)
def test_each_driver_timeout_or_reset_is_an_event(line: str) -> None:
    assert nvme.events([f"[   61.2] {line}"]) == [f"[   61.2] {line}"]


@pytest.mark.parametrize("line", NOT_DRIVER)
def test_other_nvme_lines_are_not(line: str) -> None:
    assert nvme.events([line]) == []


def _failed(hint: str = "", when: str = "call", **evidence: Any) -> Evidence:
    return Evidence(phases=tuple(PhaseOutcome(w, "failed" if w == when else "passed",
                                              "assert x" if w == when else "",
                                              hint=hint if w == when else "")
                                 for w in ("setup", "call", "teardown")), **evidence)


EVENTS = {"nvme_events": [DRIVER[0], DRIVER[1]]}


def test_a_failure_in_an_nvme_timeout_window_is_infra_with_the_evidence() -> None:
    rec = record_of("t::x", _failed("FAIL", data=EVENTS))
    assert rec.verdict == "INFRA", rec
    assert rec.reason.startswith("INFRA: the NVMe driver timed out or reset the controller")
    assert DRIVER[0] in rec.reason and rec.data["nvme_events"] == EVENTS["nvme_events"]
    assert "FAIL" in rec.reason  # what the test saw, kept as the consequence


def test_a_hang_too_but_never_a_crash_nor_a_kernel_warning() -> None:
    hang = record_of("t::x", _failed("HANG", data=EVENTS))
    assert hang.verdict == "INFRA"
    crash = record_of("t::x", _failed("CRASH", data=EVENTS, splats=(
        {"kind": "KASAN", "fatal": True, "title": "KASAN: use-after-free"},)))
    assert crash.verdict == "CRASH"
    warned = record_of("t::x", _failed(data=EVENTS, splats=(
        {"kind": "WARNING", "fatal": False, "title": "WARNING in io_destroy"},)))
    assert warned.verdict == "FAIL"
    # A pass in such a window stays a pass: every check held; the events are kept.
    ok = record_of("t::x", Evidence(phases=tuple(PhaseOutcome(w, "passed") for w in (
        "setup", "call", "teardown")), data=EVENTS))
    assert ok.verdict == "PASS" and ok.data["nvme_events"]


def test_the_diagnosis_of_a_hang_says_nvme_when_the_console_does() -> None:
    verdict, summary = nvme.diagnosed("HANG", "no answer in 60 s", [
        "[ 70.1] " + DRIVER[0], "[ 190.3] " + DRIVER[1]], splats=[])
    assert verdict == "INFRA" and "NVMe driver timed out" in summary and DRIVER[0] in summary
    assert nvme.diagnosed("HANG", "no answer", ["io_uring: x"], splats=[]) == \
        ("HANG", "no answer")


@pytest.mark.parametrize("verdict", ["INFRA", "XFAIL"])
def test_bisection_learns_nothing_from_infra_or_xfail(verdict: str) -> None:
    for bad_if in (BadIf("fail"), BadIf("crash"), BadIf("splat", "KASAN*")):
        got = judge(Observed(verdict=verdict, reason="known issue: FAIL: x",
                             splats=("KASAN: use-after-free",)), bad_if)
        assert got.outcome == Outcome.INFRA, (verdict, bad_if, got)
