"""The verdict layer on plain data: folding phases, rolling up, exit codes."""

from __future__ import annotations

import pytest

from lab.errors import (
    EXIT_INFRA_ERROR,
    EXIT_NOTHING_TESTED,
    EXIT_OK,
    EXIT_TEST_FAILED,
)
from lab.results.verdict import VERDICTS, PhaseOutcome, Verdict, exit_code, fold, worst

OK = PhaseOutcome("setup", "passed")
CALL_OK = PhaseOutcome("call", "passed")
TEARDOWN_OK = PhaseOutcome("teardown", "passed")


@pytest.mark.parametrize("phases, hints, want", [
    ([OK, CALL_OK, TEARDOWN_OK], [], ("PASS", "")),
    ([OK, PhaseOutcome("call", "failed", "assert 1 == 2"), TEARDOWN_OK], [],
     ("FAIL", "assert 1 == 2")),
    ([PhaseOutcome("setup", "skipped", "Skipped: lacks CONFIG_AIO"), TEARDOWN_OK], [],
     ("SKIP", "lacks CONFIG_AIO")),
    ([PhaseOutcome("setup", "failed", "boot timed out"), TEARDOWN_OK], [],
     ("INFRA", "boot timed out")),
    ([OK, PhaseOutcome("call", "failed", "agent exited"), TEARDOWN_OK], ["CRASH"],
     ("CRASH", "agent exited")),
])
def test_fold(phases: list[PhaseOutcome], hints: list[str], want: tuple[str, str]) -> None:
    assert fold(phases, hints=hints) == want


@pytest.mark.parametrize("teardown, hints, want", [
    (PhaseOutcome("teardown", "failed", "kernel splat during the test: WARNING"), ["FAIL"],
     ("FAIL", "kernel splat during the test: WARNING")),
    (PhaseOutcome("teardown", "failed", "agent exited"), ["CRASH"],
     ("CRASH", "agent exited")),
    (PhaseOutcome("teardown", "failed", "agent exited"), [], ("INFRA", "agent exited")),
    (TEARDOWN_OK, [], ("SKIP", "needs multishot")),
])
def test_a_skip_does_not_hide_its_teardown(teardown: PhaseOutcome, hints: list[str],
                                           want: tuple[str, str]) -> None:
    """A test that did I/O, then skipped, still has its teardown judged: a splat or a dead
    guest after the skip is the verdict, never SKIP."""
    skipped = PhaseOutcome("call", "skipped", "Skipped: needs multishot")
    assert fold([OK, skipped, teardown], hints=hints) == want


def test_fold_prefers_the_diagnosis_reason() -> None:
    phases = [OK, PhaseOutcome("call", "failed", "agent exited"), TEARDOWN_OK]
    assert fold(phases, hints=["HANG"], reason="HANG: no answer") == ("HANG", "HANG: no answer")


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
