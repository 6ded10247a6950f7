"""The verdict layer on plain data: folding phases, rolling up, exit codes."""

from __future__ import annotations

import pytest

from lab.errors import (
    EXIT_INFRA_ERROR,
    EXIT_NOTHING_TESTED,
    EXIT_OK,
    EXIT_TEST_FAILED,
)
from lab.results.evidence import Evidence, PhaseOutcome
from lab.results.verdict import VERDICTS, Verdict, exit_code, fold, worst

OK = PhaseOutcome("setup", "passed")
CALL_OK = PhaseOutcome("call", "passed")
TEARDOWN_OK = PhaseOutcome("teardown", "passed")
PASSED = (OK, CALL_OK, TEARDOWN_OK)


@pytest.mark.parametrize("phases, want", [
    ([OK, CALL_OK, TEARDOWN_OK], ("PASS", "")),
    ([OK, PhaseOutcome("call", "failed", "assert 1 == 2"), TEARDOWN_OK],
     ("FAIL", "assert 1 == 2")),
    ([PhaseOutcome("setup", "skipped", "Skipped: lacks CONFIG_AIO"), TEARDOWN_OK],
     ("SKIP", "lacks CONFIG_AIO")),
    ([PhaseOutcome("setup", "failed", "boot timed out"), TEARDOWN_OK],
     ("INFRA", "boot timed out")),
    ([OK, PhaseOutcome("call", "failed", "agent exited", hint="CRASH"), TEARDOWN_OK],
     ("CRASH", "agent exited")),
    # A fixture's errno is the kernel's, not the machinery's: its hint says so.
    ([PhaseOutcome("setup", "failed", "EINVAL", hint="FAIL"), TEARDOWN_OK],
     ("FAIL", "EINVAL")),
])
def test_fold(phases: list[PhaseOutcome], want: tuple[str, str]) -> None:
    assert fold(Evidence(phases=tuple(phases))) == want


@pytest.mark.parametrize("teardown, want", [
    (PhaseOutcome("teardown", "failed", "kernel splat during the test: WARNING", hint="FAIL"),
     ("FAIL", "kernel splat during the test: WARNING")),
    (PhaseOutcome("teardown", "failed", "agent exited", hint="CRASH"),
     ("CRASH", "agent exited")),
    (PhaseOutcome("teardown", "failed", "agent exited"), ("INFRA", "agent exited")),
    (TEARDOWN_OK, ("SKIP", "needs multishot")),
])
def test_a_skip_does_not_hide_its_teardown(teardown: PhaseOutcome,
                                           want: tuple[str, str]) -> None:
    """A test that did I/O, then skipped, still has its teardown judged: a splat or a dead
    guest after the skip is the verdict, never SKIP."""
    skipped = PhaseOutcome("call", "skipped", "Skipped: needs multishot")
    assert fold(Evidence(phases=(OK, skipped, teardown))) == want


def test_fold_prefers_the_diagnosis_reason() -> None:
    phases = (OK, PhaseOutcome("call", "failed", "agent exited", hint="HANG"), TEARDOWN_OK)
    assert fold(Evidence(phases=phases, reason="HANG: no answer")) == ("HANG", "HANG: no answer")


def test_the_hint_of_the_phase_that_failed_decides() -> None:
    """A hint belongs to its phase: an xfail's hint in the call (pytest.xfail raises a
    Failed) does not decide the teardown's failure."""
    xfailed = PhaseOutcome("call", "skipped", "reason: known", hint="FAIL")
    died = PhaseOutcome("teardown", "failed", "agent exited", hint="CRASH")
    assert fold(Evidence(phases=(OK, xfailed, died))) == ("CRASH", "agent exited")


def test_a_crash_in_any_phase_outranks_the_failed_phase() -> None:
    """The kernel died in the teardown (a fatal splat) after the call raised something
    unhinted (a KeyError): CRASH, as before the refactor, not the call's FAIL."""
    raised = PhaseOutcome("call", "failed", "KeyError: 'res'")
    died = PhaseOutcome("teardown", "failed", "kernel splat: BUG", hint="CRASH")
    assert fold(Evidence(phases=(OK, raised, died))) == ("CRASH", "KeyError: 'res'")


def test_a_hang_in_any_phase_outranks_the_failed_phase() -> None:
    raised = PhaseOutcome("call", "failed", "assert 1 == 2", hint="FAIL")
    hung = PhaseOutcome("teardown", "failed", "no answer", hint="HANG")
    assert fold(Evidence(phases=(OK, raised, hung))) == ("HANG", "assert 1 == 2")


def test_crash_and_hang_the_first_in_phase_order_decides() -> None:
    """As when the first hint of any phase decided (f684c55's fold)."""
    hung = PhaseOutcome("call", "failed", "no answer", hint="HANG")
    died = PhaseOutcome("teardown", "failed", "agent exited", hint="CRASH")
    assert fold(Evidence(phases=(OK, hung, died))) == ("HANG", "no answer")


def test_an_infra_hint_elsewhere_does_not_decide() -> None:
    """Only the kernel's own outcomes outrank: the failed phase keeps its FAIL."""
    raised = PhaseOutcome("call", "failed", "EINVAL", hint="FAIL")
    lost = PhaseOutcome("teardown", "failed", "ssh lost", hint="INFRA")
    assert fold(Evidence(phases=(OK, raised, lost))) == ("FAIL", "EINVAL")


# What scenarios/races/conftest.py leaves when a race's calls overlapped too rarely to
# decide (its floor, scenarios/races/params.py), and when the clock cannot tell.
BELOW_FLOOR = ("the racing calls overlapped in 3 of 1000 rounds (0.3%); deciding needs at "
               "least 20 and 1%: a use-after-free needs the destroy inside the submit")
OVERLAP = {"rounds": 1000, "overlapped": 3, "rate": 0.003, "floor_rounds": 20,
           "floor_rate": 0.01, "clock_res_ns": 1, "power": 0.05}
COARSE = ("the clock moves in 4000 us steps here: too coarse to tell whether the racing "
          "calls overlapped")
FAILED_CALL = PhaseOutcome("call", "failed", "assert 'EINVAL' == 'EBADF'")
SPLAT = {"kind": "WARNING", "fatal": False, "title": "WARNING in io_destroy"}
NVME = {"nvme_events": ["nvme nvme0: I/O tag 12 (100c) opcode 0x2 (Read) QID 1 timeout, "
                        "aborting req_op:READ(0) size:4096"]}


@pytest.mark.parametrize("evidence, want", [
    # A race below its floor: every check held, but nothing was decided.
    (Evidence(phases=PASSED, inconclusive=BELOW_FLOOR, data={"race": {}, "overlap": OVERLAP}),
     ("INCONCLUSIVE", BELOW_FLOOR)),
    (Evidence(phases=PASSED, inconclusive=COARSE), ("INCONCLUSIVE", COARSE)),
    # A race that raced is judged: no note, a PASS.
    (Evidence(phases=PASSED, data={"overlap": {**OVERLAP, "overlapped": 400}}), ("PASS", "")),
    # A failed check is still a FAIL, below the floor or not.
    (Evidence(phases=(OK, FAILED_CALL, TEARDOWN_OK), inconclusive=BELOW_FLOOR),
     ("FAIL", FAILED_CALL.message)),
    # A splat in the window fails the teardown: FAIL, never INCONCLUSIVE.
    (Evidence(phases=(OK, CALL_OK, PhaseOutcome("teardown", "failed", "kernel splat during the "
                                                "test: WARNING in io_destroy", hint="FAIL")),
              inconclusive=BELOW_FLOOR, splats=(SPLAT,)),
     ("FAIL", "kernel splat during the test: WARNING in io_destroy")),
    # The guest died in the call: CRASH, whatever the test had said before.
    (Evidence(phases=(OK, PhaseOutcome("call", "failed", "agent exited", hint="CRASH"),
                      TEARDOWN_OK),
              inconclusive=BELOW_FLOOR, reason="CRASH: the kernel panicked"),
     ("CRASH", "CRASH: the kernel panicked")),
    # A skip stays a skip: the test never got to decide.
    (Evidence(phases=(OK, PhaseOutcome("call", "skipped", "Skipped: no IORING_OP_X"),
                      TEARDOWN_OK), inconclusive=BELOW_FLOOR),
     ("SKIP", "no IORING_OP_X")),
    # The NVMe driver's timeouts in the window do not make a pass anything else.
    (Evidence(phases=PASSED, inconclusive=COARSE, data=NVME), ("INCONCLUSIVE", COARSE)),
])
def test_inconclusive_only_where_every_check_held(evidence: Evidence,
                                                  want: tuple[str, str]) -> None:
    assert fold(evidence) == want


def test_a_failure_in_an_nvme_timeout_window_is_folded_to_infra() -> None:
    failed = Evidence(phases=(OK, FAILED_CALL, TEARDOWN_OK), data=NVME)
    verdict, reason = fold(failed)
    assert verdict == "INFRA" and reason.startswith("INFRA: the NVMe driver timed out")
    assert reason.endswith(f"the test saw FAIL: {FAILED_CALL.message}")
    # The kernel spoke for itself (a warning in the window): it stays a FAIL.
    assert fold(Evidence(phases=failed.phases, data=NVME, splats=(SPLAT,)))[0] == "FAIL"


def test_worst_follows_the_documented_order() -> None:
    assert VERDICTS[0] == "CRASH" and VERDICTS[-1] == "SKIP"
    assert worst(["PASS", "FAIL", "SKIP"]) == "FAIL"
    assert worst(["PASS", "XFAIL"]) == "XFAIL"
    assert worst(["SKIP", "PASS"]) == "PASS"
    assert worst([]) == "SKIP"


@pytest.mark.parametrize("verdicts, want", [
    (["PASS", "SKIP"], EXIT_OK),
    (["PASS", "INCONCLUSIVE"], EXIT_OK),
    (["PASS", "XFAIL"], EXIT_OK),
    (["PASS", "FAIL"], EXIT_TEST_FAILED),
    (["PASS", "HANG"], EXIT_TEST_FAILED),
    # A real failure is exit 1 whatever the machinery lost beside it.
    (["PASS", "CRASH", "INFRA"], EXIT_TEST_FAILED),
    (["FAIL", "INFRA"], EXIT_TEST_FAILED),
    (["HANG", "MISS", "NOTRUN"], EXIT_TEST_FAILED),
    (["XFAIL", "INFRA"], EXIT_INFRA_ERROR),
    (["PASS", "INFRA"], EXIT_INFRA_ERROR),
    (["PASS", "NOTRUN"], EXIT_INFRA_ERROR),
    (["PASS", "MISS"], EXIT_INFRA_ERROR),
    (["SKIP", "SKIP"], EXIT_NOTHING_TESTED),
    (["SKIP", "INCONCLUSIVE"], EXIT_NOTHING_TESTED),
    ([], EXIT_NOTHING_TESTED),
])
def test_exit_code(verdicts: list[str], want: int) -> None:
    assert exit_code(verdicts) == want


def test_every_verdict_is_documented() -> None:
    import lab.results.verdict as mod

    assert all(f"- {v.value}:" in (mod.__doc__ or "") for v in Verdict)


@pytest.mark.parametrize("stop, verdicts, want", [
    # The lab stopped the run (the reboot limit, an infrastructure stop): a failure seen
    # before it is still the run's story.
    ({"exit_code": 3, "reason": "reboot limit"}, ["FAIL", "NOTRUN"], EXIT_TEST_FAILED),
    ({"exit_code": 3, "reason": "reboot limit"}, ["PASS", "NOTRUN"], EXIT_INFRA_ERROR),
    # Ctrl-C stays an interruption: the run did not finish.
    ({"exit_code": 130, "reason": "interrupted (Ctrl-C)"}, ["FAIL", "NOTRUN"], 130),
    (None, ["CRASH", "INFRA", "INCONCLUSIVE"], EXIT_TEST_FAILED),
])
def test_exit_status_a_failure_wins_over_the_machinery(
        stop: dict[str, object] | None, verdicts: list[str], want: int) -> None:
    from lab.run.runner import exit_status

    assert exit_status(pytest.ExitCode.TESTS_FAILED, verdicts, stop=stop) == want
    assert exit_status(pytest.ExitCode.INTERNAL_ERROR, ["FAIL"], stop=None) == EXIT_TEST_FAILED


def test_the_exit_line_names_the_code_and_counts_inconclusive() -> None:
    from lab.results.verdict import exit_line

    line = exit_line(EXIT_TEST_FAILED, ["FAIL", "INFRA", "INCONCLUSIVE", "INCONCLUSIVE", "PASS"])
    assert line.startswith("exit 1: a test failed")
    assert "1 FAIL" in line and "1 INFRA" in line and "2 INCONCLUSIVE" in line
    assert "0 INCONCLUSIVE" in exit_line(EXIT_OK, ["PASS"])
