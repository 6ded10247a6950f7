"""Whether a commit is good, bad or skipped, from the runs at it: pure functions over counts.

Modelled on syzkaller's ``pkg/bisect`` (``bisectionDecision(total, bad, good,
infra)``), stricter on good.  Each run at a commit is one ``Outcome``; the
counts decide:

- bad: at least ``max(2, (total - infra) / 6)`` runs showed the failure (one is
  enough when the plan is a single run: by default a failure means bad);
- good: every run that tested something passed, and at least half of them did
  test something;
- anything else (infrastructure, an unrelated splat, a disagreement that more
  runs did not settle) is skip.

A good verdict is only as sure as the runs were many: a bad commit shows its
failure in each run with probability ``p`` (estimated at the bad endpoint), so
``good`` passing runs mistake a bad commit for a good one with probability
``(1 - p) ** good``; a step's confidence is ``1 - (1 - p) ** good`` and the
result's is the product (syzkaller ignores results below 0.66; so do we).  A
bad verdict has confidence 1: the target does not fail at good commits.

``next_step`` is the sequential test that stops a commit's runs once the
verdict is settled, extends them (twice the runs) when they disagree, and gives
up early when nothing the remaining runs could show would settle it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

THRESHOLD = 0.66  # below this the result is inconclusive, never a culprit (syz-ci's cut)
GOAL = 0.9  # the confidence a flaky bisection aims for; it sets each good step's target
AUTO_RUNS = 20  # runs per commit with --runs auto (syzkaller: 20 once flaky)
ENDPOINT_RUNS = 3  # runs at the bad endpoint by default: enough to see a flaky target
BAD_FRACTION = 6  # bad needs (total - infra) / 6 failing runs, as syzkaller


class Outcome(StrEnum):
    """What one run at a commit says to the bisection."""

    BAD = "bad"  # the target failed the way --bad-if says
    GOOD = "good"  # every target passed, no unrelated splat
    INFRA = "infra"  # nothing learnt: the build, the boot or the harness failed, a SKIP
    OTHER = "other"  # an unrelated splat or crash: it must not steer the search


class Verdict(StrEnum):
    """A commit's verdict, as `git bisect` takes it."""

    GOOD = "good"
    BAD = "bad"
    SKIP = "skip"


@dataclass(frozen=True)
class Counts:
    """Runs at one commit by outcome."""

    total: int = 0
    bad: int = 0
    good: int = 0
    infra: int = 0

    @property
    def other(self) -> int:
        return self.total - self.bad - self.good - self.infra

    @property
    def tested(self) -> int:
        return self.total - self.infra

    @classmethod
    def of(cls, outcomes: Iterable[Outcome]) -> Counts:
        seen = list(outcomes)
        return cls(total=len(seen), bad=seen.count(Outcome.BAD), good=seen.count(Outcome.GOOD),
                   infra=seen.count(Outcome.INFRA))

    def text(self) -> str:
        parts = [f"{n} {name}" for name, n in (("bad", self.bad), ("good", self.good),
                                               ("infra", self.infra), ("other", self.other))
                 if n]
        return f"{self.total} run{'s' if self.total != 1 else ''}" + (
            f": {', '.join(parts)}" if parts else "")


def min_bad(tested: int) -> int:
    """Failing runs a bad verdict needs among ``tested`` runs (several runs planned)."""
    return max(2, math.ceil(tested / BAD_FRACTION))


def decision(total: int, bad: int, good: int, infra: int, *, single: bool = False) -> Verdict:
    """The verdict once a commit's runs are done (syzkaller's bisectionDecision).

    ``single``: the plan was one run, where one failure is bad and one pass good.
    """
    tested = total - infra
    if total <= 0 or tested <= 0:
        return Verdict.SKIP
    if single:
        if bad > 0:
            return Verdict.BAD
        return Verdict.GOOD if good == total else Verdict.SKIP
    if bad >= min_bad(tested):
        return Verdict.BAD
    if bad == 0 and good == tested and 2 * good >= total:
        return Verdict.GOOD
    return Verdict.SKIP


def step_confidence(verdict: Verdict, good: int, p: float) -> float:
    """How sure a verdict is: a good one could be a bad commit that never showed it."""
    if verdict != Verdict.GOOD:
        return 1.0
    return 1.0 - (1.0 - min(max(p, 0.0), 1.0)) ** good


def good_runs_needed(p: float, target: float) -> int:
    """Passing runs after which a good verdict reaches ``target`` confidence."""
    if p >= 1.0:
        return 1
    if p <= 0.0:
        return 1 << 30  # never: a target that never fails cannot be told apart
    return max(1, math.ceil(math.log(1.0 - target) / math.log(1.0 - p)))


Z = 1.28  # one-sided 90%: how cautious the estimate of p is


def estimate_p(counts: Counts, z: float = Z) -> float:
    """The chance that a run at a bad commit shows the failure, from the bad endpoint's runs.

    The lower end of Wilson's interval, not the plain ratio: a lucky endpoint
    (6 failures in 20 runs of a 20% flake) would otherwise let good verdicts
    stop too early and be too sure.  Twenty runs with six failures give 0.19.
    """
    n = counts.bad + counts.good
    if n == 0:
        return 1.0
    ratio = counts.bad / n
    centre = ratio + z * z / (2 * n)
    spread = z * math.sqrt(ratio * (1 - ratio) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n))


def step_target(commits: int, goal: float = GOAL) -> float:
    """The confidence each good step aims for so that about log2(commits) steps reach ``goal``."""
    steps = max(1, math.ceil(math.log2(max(commits, 1) + 1))) + 1  # + the good endpoint
    return math.pow(goal, 1.0 / steps)


@dataclass(frozen=True)
class Policy:
    """How many runs a commit gets and when they stop."""

    runs: int = 1  # planned runs per commit (1: one run decides)
    p: float = 1.0  # chance a run at a bad commit shows the failure
    target: float = 0.99  # a good commit's confidence at which its runs stop early
    early: bool = True  # stop once settled (off at the bad endpoint: it estimates p)
    extend: bool = True  # twice the runs when they disagree

    @property
    def single(self) -> bool:
        return self.runs <= 1

    def describe(self) -> str:
        if self.single:
            return "1 run per commit (a failure is bad, a pass good)"
        return (f"up to {self.runs} runs per commit ({2 * self.runs} when they disagree), "
                f"p={self.p:.2f} per run at a bad commit, good stops at "
                f"{good_runs_needed(self.p, self.target)} passing runs")


def next_step(counts: Counts, policy: Policy) -> Verdict | None:
    """The settled verdict, or None while another run could change it."""
    if policy.single:
        return decision(counts.total, counts.bad, counts.good, counts.infra, single=True) \
            if counts.total >= 1 else None
    disagree = counts.bad > 0 or counts.other > 0
    cap = 2 * policy.runs if disagree and policy.extend else policy.runs
    if policy.early:
        if counts.bad >= min_bad(counts.tested):
            return Verdict.BAD  # more passes cannot unmake failures at a good commit
        if (not disagree and counts.good >= good_runs_needed(policy.p, policy.target)
                and 2 * counts.good >= counts.total):
            return Verdict.GOOD
        left = cap - counts.total
        if disagree and left > 0 and counts.bad + left < min_bad(counts.tested + left):
            return Verdict.SKIP  # neither good (it failed) nor reachably bad
    if counts.total >= cap:
        return decision(counts.total, counts.bad, counts.good, counts.infra)
    return None


def product(confidences: Iterable[float]) -> float:
    out = 1.0
    for c in confidences:
        out *= c
    return out
