"""The bisection: check the endpoints, let the search pick points, give each a verdict.

The driver knows points only through its ports (lab.bisect.ports: a builder
and a tester; lab.bisect.search: git bisect or a list) and keeps everything in
the journal (lab.bisect.journal), so it is the same code for a fresh start and
a resume: a run the journal (or the store of earlier bisections) already has
is used instead of being run again.

1. The bad endpoint first: its runs say what bad means (``--bad-if``, by
   default what it shows), which selected tests are the targets, and how often
   a run at a bad commit shows the failure (``p``).  By default it gets three
   runs: if they disagree, the target is flaky and the bisection goes
   statistical (``--runs auto``).
2. The good endpoint must be good, the bad one bad; otherwise it stops with
   the verdicts seen.
3. Then each point the search names: build, run until the sequential test
   settles it (lab.bisect.decision), tell the search.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lab.bisect.classify import BadIf, Judged, classify, default_bad_if, short, targets_of
from lab.bisect.decision import (
    AUTO_RUNS,
    ENDPOINT_RUNS,
    Counts,
    Outcome,
    Policy,
    Verdict,
    estimate_p,
    next_step,
    product,
    step_confidence,
    step_target,
)
from lab.bisect.journal import Build, Conditions, Journal, Run, RunStore
from lab.bisect.ports import Builder, Tester
from lab.bisect.result import Step
from lab.bisect.search import GitSearch, ListSearch, Next
from lab.kernel.worktree import Clone

log = logging.getLogger("lab.bisect")


class EndpointError(Exception):
    """An endpoint did not behave as claimed; carries the step that shows it."""

    def __init__(self, message: str, step: Step) -> None:
        super().__init__(message)
        self.step = step


@dataclass
class Plan:
    """What the user asked for, resolved: the points and how to judge them."""

    good: str  # the good endpoint's point (commit id, version)
    bad: str
    selected: tuple[str, ...]  # test ids (without the kernel parameter) -k selects
    config_hash: str
    runs: str | None = None  # "auto", "N" or None (the default)
    bad_if: BadIf | None = None
    flaky: tuple[str, ...] = ()  # selected tests marked flaky
    state: Path = Path(".")
    reuse: bool = True
    # Under which the runs are made and reused (the accelerator filled in by the first
    # run when "auto" was not known yet).
    conditions: Conditions = field(default_factory=lambda: Conditions("", None, ""))


@dataclass
class Setup:
    """A session's ports and plan, from the options or from a journal being resumed."""

    start: dict[str, Any]  # the journal's start record
    plan: Plan
    search: GitSearch | ListSearch
    builder: Builder
    tester: Tester
    describe: Callable[[str], str]
    count: int  # points between the endpoints
    clone: Clone | None = None


@dataclass
class Driver:
    plan: Plan
    search: GitSearch | ListSearch
    builder: Builder
    tester: Tester
    journal: Journal
    store: RunStore | None
    describe: Callable[[str], str]
    count: int  # points between the endpoints
    progress: Callable[[str], None] = print
    policy: Policy = field(default_factory=Policy)
    bad_if: BadIf = field(default_factory=lambda: BadIf("fail"))
    targets: tuple[str, ...] = ()
    steps: list[Step] = field(default_factory=list)
    builds: dict[str, Build] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    _runs: dict[str, list[Run]] = field(default_factory=dict)
    _asked: set[str] = field(default_factory=set)  # points looked up in the store

    def __post_init__(self) -> None:
        for b in self.journal.builds():
            self.builds[b.point] = b
        for r in self.journal.runs():
            # A resumed bisection's own runs too: not those of another lab or accelerator.
            if r.config_hash == self.plan.config_hash and self.plan.conditions.admits(r,
                                                                                     own=True):
                self._runs.setdefault(r.point, []).append(r)

    # --- runs and builds -----------------------------------------------------------------

    def runs_at(self, point: str) -> list[Run]:
        """The journal's runs at ``point``, and (once) earlier bisections' from the store."""
        runs = self._runs.setdefault(point, [])
        # Another bisection's runs only once the accelerator is known (else asked again).
        if (point not in self._asked and self.store is not None and self.plan.reuse
                and self.plan.conditions.accel is not None):
            self._asked.add(point)
            have = {r.id for r in runs}
            found = [r for r in self.store.runs_at(point, self.plan.config_hash,
                                                   self.plan.selected,
                                                   conditions=self.plan.conditions)
                     if r.id not in have]
            for run in found:
                self.journal.append(run.to_dict())
                runs.append(run)
            if found:
                self.progress(f"bisect: {self.describe(point)}: {len(found)} run(s) reused "
                              "from earlier bisections of this tree and config")
        return runs

    def build(self, point: str) -> Build:
        known = self.builds.get(point)
        if known is not None and not known.ok:
            return known  # a failed build stays failed: no second attempt on resume
        built = self.builder.build(point)
        b = Build(point=point, ok=built.ok, artifact=built.artifact, spec=built.spec,
                  seconds=built.seconds, error=built.error, log=built.log)
        self.journal.append(b.to_dict())
        self.builds[point] = b
        return b

    def one_run(self, point: str, built: Build) -> Run:
        n = sum(len(v) for v in self._runs.values()) + 1
        out = self.plan.state / "runs" / f"{n:03d}-{point[:12]}"
        while out.exists():  # a run a kill cut short left its directory: never mix with it
            n += 1
            out = self.plan.state / "runs" / f"{n:03d}-{point[:12]}"
        tested = self.tester.test(built.spec, out=out)
        cond = self.plan.conditions
        if cond.accel is None and tested.accel:
            cond = self.plan.conditions = replace(cond, accel=tested.accel)
        run = Run(point=point, config_hash=self.plan.config_hash, artifact=built.artifact,
                  results={t: r for t, r in tested.results.items()},
                  exit_code=tested.exit_code, seconds=tested.seconds, run_dir=tested.run_dir,
                  lab=cond.lab, accel=tested.accel, known_issues=cond.known_issues)
        self.journal.append(run.to_dict())
        if self.store is not None:
            self.store.add(run, state=self.plan.state)
        self._runs.setdefault(point, []).append(run)
        return run

    def judge(self, run: Run) -> Judged:
        return classify(run.results, self.targets, self.bad_if)

    # --- one point ----------------------------------------------------------------------

    def evaluate(self, point: str, *, role: str, policy: Policy, record: bool = True) -> Step:
        t0 = time.monotonic()
        runs = self.runs_at(point)
        reused = len(runs)
        build_s = test_s = 0.0
        why = ""
        built: Build | None = None
        while True:
            judged = [self.judge(r) for r in runs]
            counts = Counts.of(j.outcome for j in judged)
            verdict = next_step(counts, policy)
            if verdict is not None:
                break
            if built is None:
                b0 = time.monotonic()
                built = self.build(point)
                build_s += time.monotonic() - b0
            if not built.ok:
                verdict, why = Verdict.SKIP, f"build failed: {built.error}"
                break
            run = self.one_run(point, built)
            test_s += run.seconds
            runs = self._runs[point]
        if not why:
            why = self._why(judged, verdict)
        conf = step_confidence(verdict, counts.good, policy.p)
        artifact = (built.artifact if built is not None else
                    next((r.artifact for r in runs if r.artifact), ""))
        foreign = sorted({s for j in judged for s in j.foreign})
        step = Step(point=point, name=self.describe(point), role=role, verdict=verdict.value,
                    counts=counts, confidence=conf, why=why, build_seconds=build_s,
                    test_seconds=test_s, seconds=(time.monotonic() - t0) if built else 0.0,
                    reused=reused, artifact=artifact, foreign=foreign)
        if record:
            self.journal.append({"kind": "step", **step.to_dict()})
        return step

    @staticmethod
    def _why(judged: list[Judged], verdict: Verdict) -> str:
        wanted = {Verdict.BAD: Outcome.BAD, Verdict.GOOD: Outcome.GOOD}.get(verdict)
        pick = [j for j in judged if j.outcome == wanted] if wanted else [
            j for j in judged if j.outcome in (Outcome.OTHER, Outcome.INFRA)]
        return (pick or judged or [Judged(Outcome.INFRA, "no runs")])[0].why

    # --- the endpoints ------------------------------------------------------------------

    def _fixed(self, runs: int) -> Policy:
        return Policy(runs=runs, early=False, extend=False)

    def check_bad_endpoint(self) -> Step:
        """Runs at the bad endpoint: what bad means, the targets, p, and the runs policy."""
        point = self.plan.bad
        asked = self.plan.runs
        first = (AUTO_RUNS if asked == "auto" or self.plan.flaky
                 else int(asked) if asked else ENDPOINT_RUNS)
        spent: list[Step] = []
        step = self._bad_runs(point, first, spent)
        mixed = step.counts.bad > 0 and step.counts.good > 0
        if asked is None and mixed and first < AUTO_RUNS:
            self.progress(f"bisect: the bad endpoint disagrees with itself "
                          f"({step.counts.text()}): the target is flaky; going statistical "
                          "(--runs auto)")
            step = self._bad_runs(point, AUTO_RUNS, spent)
        for k in ("build_seconds", "test_seconds", "seconds"):
            setattr(step, k, sum(getattr(s, k) for s in spent))
        if step.counts.bad == 0:
            raise EndpointError(self._endpoint_message("bad", point, step), step)
        p = estimate_p(step.counts)
        statistical = (asked == "auto" or bool(self.plan.flaky) or mixed
                       or (asked is not None and int(asked) > 1))
        if statistical:
            runs = int(asked) if asked not in (None, "auto") else AUTO_RUNS
            self.policy = Policy(runs=runs, p=p, target=step_target(self.count))
        else:
            self.policy = Policy(runs=1)
        self.journal.append({"kind": "policy", **self.policy_dict()})
        return step

    def _bad_runs(self, point: str, runs: int, spent: list[Step]) -> Step:
        """``runs`` runs at the bad endpoint, judged by what they themselves show."""
        policy = Policy(runs=runs, early=False, extend=False)
        self.bad_if, self.targets = self.plan.bad_if or BadIf("fail"), self.plan.selected
        spent.append(self.evaluate(point, role="bad endpoint", policy=policy, record=False))
        if spent[-1].why.startswith("build failed"):
            raise EndpointError(f"the bad endpoint {spent[-1].name} does not build: "
                                f"{spent[-1].why}", spent[-1])
        # Only the tests the collection selected: -k also matches the cell's label in a
        # run's test ids (the variant, the commit), which can pull in others.
        selected = set(self.plan.selected)
        results = [{t: o for t, o in r.results.items() if t in selected}
                   for r in self.runs_at(point)]
        self.bad_if = self.plan.bad_if or default_bad_if(results) or BadIf("fail")
        self.targets = targets_of(results, self.bad_if) or self.plan.selected
        return self.evaluate(point, role="bad endpoint", policy=policy)  # no new runs

    def check_good_endpoint(self) -> Step:
        step = self.evaluate(self.plan.good, role="good endpoint", policy=self.policy)
        if step.verdict != Verdict.GOOD:
            raise EndpointError(self._endpoint_message("good", self.plan.good, step), step)
        return step

    def _endpoint_message(self, which: str, point: str, step: Step) -> str:
        seen = self._seen(point)
        if which == "bad":
            return (f"the bad endpoint {step.name} is not bad: no run showed a failure of "
                    f"the selected tests ({step.counts.text()}; seen: {seen}); check -k, "
                    f"--bad-if, or give --runs auto for a flaky target")
        if step.verdict == Verdict.BAD:
            return (f"the good endpoint {step.name} is bad already (the change is present at "
                    f"the start): {step.counts.text()}; seen: {seen}; give an older --good")
        return (f"the good endpoint {step.name} could not be shown good: {step.why} "
                f"({step.counts.text()}; seen: {seen})")

    def _seen(self, point: str) -> str:
        """The target verdicts of each run at ``point``, for error messages."""
        out = []
        for run in self.runs_at(point)[:5]:
            tests = self.targets or tuple(run.results)
            out.append("; ".join(f"{short(t)} {run.results[t].text()}" for t in tests
                                 if t in run.results) or f"no results (exit {run.exit_code})")
        return " | ".join(out) or "no runs"

    # --- the search ---------------------------------------------------------------------

    def bisect(self) -> Next:
        """Endpoints, then steps until the search ends (``steps`` holds the path taken)."""
        bad = self.check_bad_endpoint()
        self.steps.append(bad)
        self.progress(f"bisect: bad endpoint {bad.name}: {bad.counts.text()}; bad means "
                      f"{self.bad_if}; targets {', '.join(short(t) for t in self.targets)}; "
                      f"{self.policy.describe()}")
        good = self.check_good_endpoint()
        self.steps.append(good)
        self.progress(f"bisect: good endpoint {good.name}: {good.counts.text()}")
        nxt = self.search.start(self.plan.bad, self.plan.good)
        n = 0
        while nxt.point is not None:
            n += 1
            self.progress(self._progress_line(n, nxt))
            step = self.evaluate(nxt.point, role="step", policy=self.policy)
            self.steps.append(step)
            self.progress(f"bisect: {step.name}: {step.verdict} ({step.counts.text()}"
                          + (f", confidence {step.confidence:.2f}" if step.confidence < 1 else "")
                          + (f"; {step.why}" if step.verdict == "skip" else "")
                          + f") in {step.seconds:.1f}s")
            nxt = self.search.mark(nxt.point, Verdict(step.verdict))
        return nxt

    def _progress_line(self, n: int, nxt: Next) -> str:
        elapsed = time.monotonic() - self.started
        # Steps so far predict the next ones; before any, the good endpoint does (an
        # incremental build), never the bad one (it may have paid the cold build).
        worked = ([s.seconds for s in self.steps if s.seconds > 0 and s.role == "step"]
                  or [s.seconds for s in self.steps if s.seconds > 0
                      and s.role == "good endpoint"])
        per = statistics.median(worked) if worked else 0.0
        eta = f"ETA ~{_clock(per * (nxt.steps + 1))}" if per else "ETA unknown"
        return (f"bisect: step {n}: testing {self.describe(nxt.point or '')} | "
                f"{nxt.left} left, ~{nxt.steps} more steps after this | "
                f"elapsed {_clock(elapsed)} | {eta}")

    def confidence(self) -> float:
        return product(s.confidence for s in self.steps if s.role != "bad endpoint")

    def policy_dict(self) -> dict[str, Any]:
        return {"runs": self.policy.runs, "p": round(self.policy.p, 3),
                "target": round(self.policy.target, 4), "bad_if": str(self.bad_if),
                "targets": list(self.targets), "describe": self.policy.describe()}


def _clock(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds >= 3600:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    if seconds >= 60:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{seconds:.0f}s"
