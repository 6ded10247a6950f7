"""What a test's verdict is, folded from the phases it went through: pure functions over plain data.

A test runs in three phases (setup, call, teardown), as pytest's junitxml folds
them.  Each phase that ran leaves a ``PhaseOutcome`` in the test's ``Evidence``
(lab.results.evidence), with the lab's *hint* where it knows more than "an
exception was raised": a diagnosis of a dead or hung guest, a fatal splat.
``fold`` turns a test's evidence into one verdict and its reason, and
``exit_code`` turns a run's verdicts into the exit status CI and bisection read.
Nothing here imports pytest or paramiko: the matrix, the report and bisection use it
on records read back from disk.

The verdicts, worst first, by what they say about the kernel, the test and the harness:

- CRASH: the kernel died or printed a fatal splat during the test.
- HANG: a call did not return in time (or the kernel reported a hung task); the
  guest was replaced.
- FAIL: the kernel did something a check did not expect (a wrong errno, a splat
  or new taint during the test), or the test itself is wrong.
- INFRA: the machinery failed (a host tool, SSH refused on a healthy console, a
  boot timeout with no splat); nothing was learnt about the kernel.
- MISS: the test was in the matrix but in no merged shard: nothing ran it.
- NOTRUN: the run was cut short (the reboot limit) before the test ran.
- INCONCLUSIVE: the test ran but could not decide (a race that never raced, a
  bisection below its confidence); listed, but it does not fail a run.
- XFAIL: the test failed as a known issue says it does; it does not fail a run.
- PASS: the test ran to its end and every check held; no splat, no new taint.
- SKIP: the kernel lacks what the test needs (config, version); the reason says what.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from lab.errors import (
    EXIT_INFRA_ERROR,
    EXIT_NOTHING_TESTED,
    EXIT_OK,
    EXIT_TEST_FAILED,
    RUN_EXIT_WORDS,
)
from lab.results import nvme
from lab.results.evidence import Evidence, PhaseOutcome


class Verdict(StrEnum):
    CRASH = "CRASH"
    HANG = "HANG"
    FAIL = "FAIL"
    INFRA = "INFRA"
    MISS = "MISS"
    NOTRUN = "NOTRUN"
    INCONCLUSIVE = "INCONCLUSIVE"
    XFAIL = "XFAIL"
    PASS = "PASS"
    SKIP = "SKIP"


# In the order above: worst first (the rollup of several results is the first).
VERDICTS = tuple(v.value for v in Verdict)
# The kernel (or the test) is wrong: a run with one of these failed (exit 1).
FAILED = frozenset({Verdict.FAIL, Verdict.CRASH, Verdict.HANG})
FAILED_ORDER = (Verdict.CRASH, Verdict.HANG, Verdict.FAIL)
# The harness could not say: a run with one of these and no failure is the machinery's
# failure (exit 3).
UNTESTED = frozenset({Verdict.INFRA, Verdict.MISS, Verdict.NOTRUN})
UNTESTED_ORDER = (Verdict.INFRA, Verdict.MISS, Verdict.NOTRUN)
# Something was learnt about the kernel: a run with none of these tested nothing (exit 4).
TESTED = frozenset({Verdict.PASS, Verdict.XFAIL}) | FAILED


def worst(verdicts: Iterable[str]) -> str:
    """The rollup of several verdicts (of one test across runs, or of a group): the worst."""
    seen = set(verdicts)
    return next((v for v in VERDICTS if v in seen), Verdict.SKIP.value)


@dataclass
class Diagnosis:
    """What a call that failed turned out to be, from the evidence the guest left."""

    verdict: str  # CRASH, HANG or INFRA
    summary: str
    splats: list[dict[str, Any]] = field(default_factory=list)
    excerpt: str = ""
    phase: str = ""  # the test phase it explains: "setup", "call" or "teardown"
    # What the record's data gains ("vmcore": the guest's memory, lab.vm.session).
    data: dict[str, Any] = field(default_factory=dict)


def fold(evidence: Evidence) -> tuple[str, str]:
    """(verdict, reason) of a test from its evidence, worst first.

    The first phase that failed decides, whatever came before it: a test that
    skipped in its body (after fixtures that did I/O) still has its teardown
    judged, and a splat or a dead guest there is its verdict, never SKIP.  A
    failure is CRASH or HANG when any phase's hint says so (the kernel died: a
    call's unhinted KeyError before a teardown's fatal splat is CRASH; the first
    in phase order when both), else it takes its own phase's hint when there is
    one (a diagnosis: INFRA, FAIL), else FAIL in the test's call and INFRA in a
    fixture (fetch, boot, agent).  The evidence's ``reason``, when given, replaces the phase's own
    message (a diagnosis says more).  With no failure, the first skip makes it
    SKIP.  A PASS the test called inconclusive is INCONCLUSIVE, with its words.
    Last, a FAIL or HANG in a window where the NVMe driver timed out is INFRA
    (lab.results.nvme).
    """
    verdict, reason = _phases(evidence.phases, reason=evidence.reason)
    if verdict == Verdict.PASS and evidence.inconclusive:
        verdict, reason = Verdict.INCONCLUSIVE.value, evidence.inconclusive
    # Emulated NVMe timed out in the test's window (a loaded host): that, not the
    # assertion or the wait, is the story, and the driver's lines are the evidence.
    return nvme.judged(verdict, reason, evidence.nvme_events, splats=evidence.splats)


# The kernel's own outcomes: one hinted in any phase outranks the failed phase's hint.
_DEAD_KERNEL = (Verdict.CRASH.value, Verdict.HANG.value)


def _phases(phases: Sequence[PhaseOutcome], *, reason: str) -> tuple[str, str]:
    skipped: str | None = None
    # The first in phase order when both, as when the first hint of any phase decided.
    dead = next((p.hint for p in phases if p.hint in _DEAD_KERNEL), "")
    for phase in phases:
        if phase.outcome == "skipped" and skipped is None:
            skipped = phase.message.removeprefix("Skipped: ")
        if phase.outcome == "failed":
            if dead or phase.hint:
                verdict = dead or phase.hint
            elif phase.when == "call":
                verdict = Verdict.FAIL.value
            else:
                verdict = Verdict.INFRA.value
            return verdict, reason or phase.message
    if skipped is not None:
        return Verdict.SKIP.value, skipped
    return Verdict.PASS.value, ""


def exit_code(verdicts: Iterable[str]) -> int:
    """The exit status a run's verdicts mean (lab.errors).

    1 if any test failed (FAIL, CRASH, HANG), whatever else happened: a kernel bug is
    the run's story even when the machinery also lost tests beside it.  Else 3 if the
    machinery lost any test (INFRA, MISS, NOTRUN), else 4 if nothing was tested (only
    SKIP and INCONCLUSIVE, or no test at all), else 0: at least one test ran and none
    failed.
    """
    seen = set(verdicts)
    if seen & FAILED:
        return EXIT_TEST_FAILED
    if seen & UNTESTED:
        return EXIT_INFRA_ERROR
    if not seen & TESTED:
        return EXIT_NOTHING_TESTED
    return EXIT_OK


def exit_line(code: int, verdicts: Iterable[str]) -> str:
    """The closing line of a run: its exit status, what that means, and the counts
    behind it (the INCONCLUSIVE count always: a run can pass with checks undecided)."""
    seen = Counter(verdicts)
    shown = [v for v in (*FAILED_ORDER, *UNTESTED_ORDER) if seen[v]]
    counts = ", ".join([*(f"{seen[v]} {v}" for v in shown),
                        f"{seen[Verdict.INCONCLUSIVE]} {Verdict.INCONCLUSIVE.value}"])
    words = RUN_EXIT_WORDS.get(code)
    return f"exit {code}: {words} ({counts})" if words else f"exit {code} ({counts})"
