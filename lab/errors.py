"""The lab's two error families and the exit codes they map to.

A ``UserError`` is the caller's mistake (bad kernel spec, busy port, missing
host tool): one line, exit 2.  An ``InfraError`` is the machinery failing
(QEMU died, SSH lost, boot timeout): one line naming the phase and its log,
exit 3.  ``lab.cli`` is the only place that turns them into exit codes; a run's
verdicts map to 0, 1, 3 or 4 in ``lab.results.verdict.exit_code``; Ctrl-C is 130.
"""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_TEST_FAILED = 1
EXIT_USER_ERROR = 2
EXIT_INFRA_ERROR = 3
EXIT_NOTHING_TESTED = 4  # every selected test SKIPped (or was inconclusive)
EXIT_INCONCLUSIVE = 4  # lab bisect named no culprit: only skipped commits left, or low confidence
# lab compare: no regression, but a check the base run made is not made in the new one.
EXIT_LOST_COVERAGE = 5
# Ctrl-C: 128 + SIGINT, what a shell reports for a command SIGINT ended, so that a
# script (or `make`) sees an interruption, not a usage error.
EXIT_INTERRUPTED = 130
# Its output's reader went away (`lab ... | head`): as a shell says of a command SIGPIPE ended.
EXIT_BROKEN_PIPE = 141

# What each exit status of `lab run` (and `lab rerun`) means: its --help lists them.
RUN_EXIT_CODES = {
    EXIT_OK: "at least one test ran and none failed (SKIP allowed; XFAIL counts as tested)",
    EXIT_TEST_FAILED: "a test failed: FAIL, CRASH or HANG, whatever else happened (INFRA, "
                      "MISS or NOTRUN beside it, the lab's stop after a crash loop)",
    EXIT_USER_ERROR: "a mistake in the command: one line says what and how to fix it",
    EXIT_INFRA_ERROR: "the machinery failed and no test did (INFRA, MISS, NOTRUN): the line "
                      "names the phase and its log",
    EXIT_NOTHING_TESTED: "nothing was tested: every selected test was skipped or "
                         "INCONCLUSIVE (the summary counts the reasons)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C): the records, summary, JUnit and report of what "
                      "ran are kept",
    EXIT_BROKEN_PIPE: "the reader of the output went away (| head): what ran is kept, the "
                      "run did not finish",
}

# What each exit status of `lab compare BASE NEW` means: its --help lists them.
COMPARE_EXIT_CODES = {
    EXIT_OK: "no regression and no check lost",
    EXIT_TEST_FAILED: "a regression: a test fails (FAIL, CRASH, HANG) that did not before "
                      "(it passed, was skipped, INCONCLUSIVE, INFRA, MISS or NOTRUN, or is "
                      "new, or its cell is)",
    EXIT_USER_ERROR: "a mistake in the command, or a run directory that cannot be read",
    EXIT_LOST_COVERAGE: "no regression, but a check was lost: a test tested in BASE (PASS or "
                        "a failure) is SKIP, INCONCLUSIVE, INFRA, MISS, NOTRUN or gone in NEW, "
                        "or a pass is now a known issue's XFAIL",
}

# The same in a few words, for the closing "exit N: ..." line of a run.
RUN_EXIT_WORDS = {
    EXIT_OK: "passed",
    EXIT_TEST_FAILED: "a test failed",
    EXIT_USER_ERROR: "a mistake in the command",
    EXIT_INFRA_ERROR: "the machinery failed",
    EXIT_NOTHING_TESTED: "nothing was tested",
    EXIT_INTERRUPTED: "interrupted",
    EXIT_BROKEN_PIPE: "the reader went away",
}


class LabError(Exception):
    """Base of the lab's own errors; ``str()`` is the one line shown."""

    exit_code = EXIT_INFRA_ERROR


class UserError(LabError):
    """The user asked for something wrong; the message says what would be right."""

    exit_code = EXIT_USER_ERROR


class InfraError(LabError):
    """A phase of the machinery failed; names the phase and where its log is."""

    exit_code = EXIT_INFRA_ERROR

    def __init__(self, message: str, *, phase: str, log: Path | None = None) -> None:
        self.phase = phase
        self.log = log
        where = f" (log: {log})" if log is not None else ""
        super().__init__(f"{phase}: {message}{where}")


class IntegrityError(InfraError):
    """A download does not match the checksum of the signed index: never used, and never
    papered over with an older cached copy."""
