"""What one run says about a commit: its target tests' verdicts mapped through ``--bad-if``.

Pure functions over the per-test results a run leaves (``lab run``'s records,
as the journal keeps them).  The targets are the selected tests that fail at
the bad endpoint; other selected tests run but do not vote.  A target:

- that did not run, or whose verdict says nothing about the kernel (INFRA, an
  NVMe timeout included, MISS, NOTRUN, INCONCLUSIVE, SKIP, XFAIL) → INFRA (skip);
- that shows what ``--bad-if`` means → BAD:
  ``fail``: FAIL or HANG of the test's own making (an errno, an assertion, a
  timeout), not a failure that is only a kernel splat;
  ``crash``: CRASH (the kernel died or printed a fatal splat);
  ``splat:GLOB``: a splat whose title matches GLOB (fnmatch);
- that shows a splat or crash ``--bad-if`` does not name, on a test that
  otherwise passed or died → OTHER (skip, and recorded: an unrelated crash must
  not steer the search);
- else → GOOD.

A run is BAD if any target is, else OTHER, INFRA, GOOD in that order.
"""

from __future__ import annotations

import fnmatch
import glob
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lab.bisect.decision import Outcome
from lab.errors import UserError
from lab.results.verdict import Verdict

# XFAIL too: a known issue stood in for what the test saw, so it says neither good nor
# bad (and an NVMe timeout is INFRA: lab.results.nvme).
NOTHING_LEARNT = frozenset({Verdict.INFRA, Verdict.MISS, Verdict.NOTRUN, Verdict.INCONCLUSIVE,
                            Verdict.SKIP, Verdict.XFAIL})
# The reasons lab.run.watch gives when only the kernel log failed a test.
SPLAT_ONLY = ("kernel splat during the test:", "the kernel's taint changed during the test")


@dataclass(frozen=True)
class Observed:
    """One test's result in one run, as the journal keeps it."""

    verdict: str
    reason: str = ""
    splats: tuple[str, ...] = ()  # titles: the splat signatures
    fatal: bool = False

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Observed:
        return cls(verdict=str(data["verdict"]), reason=str(data.get("reason", "")),
                   splats=tuple(data.get("splats", ())), fatal=bool(data.get("fatal", False)))

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "reason": self.reason, "splats": list(self.splats),
                "fatal": self.fatal}

    @property
    def splat_only(self) -> bool:
        """Failed only because the kernel log showed a splat or new taint."""
        return self.verdict == Verdict.FAIL and self.reason.startswith(SPLAT_ONLY)

    def text(self) -> str:
        why = self.reason.splitlines()[0][:120] if self.reason else ""
        return f"{self.verdict}" + (f" ({why})" if why else "")


@dataclass(frozen=True)
class BadIf:
    """What makes a run bad: ``fail``, ``crash`` or ``splat:GLOB``."""

    kind: str
    pattern: str = ""

    @classmethod
    def parse(cls, text: str) -> BadIf:
        kind, sep, pattern = text.partition(":")
        if kind in ("fail", "crash") and not sep:
            return cls(kind)
        if kind == "splat" and pattern:
            return cls("splat", pattern)
        raise UserError(f"--bad-if {text!r}: give fail, crash or splat:TITLE-GLOB "
                        "(e.g. splat:'KASAN: *io_uring*')")

    def __str__(self) -> str:
        return f"splat:{self.pattern}" if self.kind == "splat" else self.kind


@dataclass(frozen=True)
class Judged:
    """A run's outcome and why."""

    outcome: Outcome
    why: str
    foreign: tuple[str, ...] = field(default=())  # unrelated splat titles seen


def judge(result: Observed | None, bad_if: BadIf) -> Judged:
    """One target test's result through ``bad_if``."""
    if result is None:
        return Judged(Outcome.INFRA, "did not run")
    verdict = result.verdict
    if verdict in NOTHING_LEARNT:
        return Judged(Outcome.INFRA, result.text())
    if bad_if.kind == "splat":
        if any(fnmatch.fnmatchcase(t, bad_if.pattern) for t in result.splats):
            return Judged(Outcome.BAD, result.text())
        if result.splats:
            return Judged(Outcome.OTHER, f"unrelated splat: {result.splats[0]}", result.splats)
        if verdict == Verdict.CRASH:
            return Judged(Outcome.OTHER, f"crashed without a report: {result.text()}")
        return Judged(Outcome.GOOD, result.text())  # the splat did not appear
    if bad_if.kind == "crash":
        if verdict == Verdict.CRASH:
            return Judged(Outcome.BAD, result.text())
        if result.splats:
            return Judged(Outcome.OTHER, f"unrelated splat: {result.splats[0]}", result.splats)
        return Judged(Outcome.GOOD, result.text())
    # fail
    if verdict == Verdict.CRASH:
        return Judged(Outcome.OTHER, f"crashed: {result.text()}", result.splats)
    if verdict in (Verdict.FAIL, Verdict.HANG):
        if result.splat_only:
            title = result.splats[0] if result.splats else result.reason.splitlines()[0]
            return Judged(Outcome.OTHER, f"unrelated splat: {title}", result.splats)
        return Judged(Outcome.BAD, result.text())
    if result.splats:
        return Judged(Outcome.OTHER, f"unrelated splat: {result.splats[0]}", result.splats)
    return Judged(Outcome.GOOD, result.text())


_ORDER = (Outcome.BAD, Outcome.OTHER, Outcome.INFRA, Outcome.GOOD)


def classify(results: Mapping[str, Observed], targets: Iterable[str],
             bad_if: BadIf) -> Judged:
    """One run's outcome over the target tests."""
    judged = {t: judge(results.get(t), bad_if) for t in targets}
    if not judged:
        return Judged(Outcome.INFRA, "no target tests")
    for outcome in _ORDER:
        hits = [(t, j) for t, j in judged.items() if j.outcome == outcome]
        if hits:
            test, first = hits[0]
            more = f" (and {len(hits) - 1} more)" if len(hits) > 1 else ""
            foreign = tuple(dict.fromkeys(s for _, j in judged.items() for s in j.foreign))
            return Judged(outcome, f"{short(test)}: {first.why}{more}", foreign)
    raise AssertionError(judged)


def default_bad_if(runs: Iterable[Mapping[str, Observed]]) -> BadIf | None:
    """What the bad endpoint shows: its first splat, else a crash, else a failure."""
    failing = [r for run in runs for r in run.values()
               if r.verdict in (Verdict.FAIL, Verdict.HANG, Verdict.CRASH)]
    for r in failing:
        if r.splats and (r.verdict == Verdict.CRASH or r.splat_only):
            return BadIf("splat", glob.escape(r.splats[0]))
    if any(r.verdict == Verdict.CRASH for r in failing):
        return BadIf("crash")
    return BadIf("fail") if failing else None


def targets_of(runs: Iterable[Mapping[str, Observed]], bad_if: BadIf) -> tuple[str, ...]:
    """The tests that are bad under ``bad_if`` in any of the bad endpoint's runs."""
    found: dict[str, None] = {}
    for run in runs:
        for test, result in run.items():
            if judge(result, bad_if).outcome == Outcome.BAD:
                found[test] = None
    return tuple(found)


def short(test: str) -> str:
    """A test id without its directory: ``test_io_destroy.py::test_destroy_twice_is_einval``."""
    return test.rsplit("/", 1)[-1]
