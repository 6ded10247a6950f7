"""A bisection's outcome as plain data: the steps taken, the result, what to read it with.

``Result.to_dict()`` is ``bisect.json``; its ``report`` entry is a plain dict
(title, summary lines, a table of the path taken) that the HTML report renders
as one section without knowing anything about bisection.  ``lines()`` is what
the terminal shows at the end.

Kinds of result (syzkaller's Result: a culprit, an inconclusive range, or the
change already present at the start):

- ``culprit``: the first bad point, its confidence at or above the threshold;
- ``inconclusive``: a first bad point was found but the product of the steps'
  confidences is below the threshold: the numbers are shown, no culprit named;
- ``range``: only skipped points are left; the first bad is one of them;
- ``endpoints``: the endpoints did not behave as claimed (the good one bad, the
  bad one good, or either untestable), with the verdicts seen.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from lab.bisect.decision import THRESHOLD, Counts


@dataclass
class Step:
    """One point's verdict on the path taken."""

    point: str
    name: str  # a short id and subject, or a version
    role: str  # "bad endpoint", "good endpoint", "step", "parent", "revert"
    verdict: str
    counts: Counts
    confidence: float
    why: str = ""
    build_seconds: float = 0.0
    test_seconds: float = 0.0
    seconds: float = 0.0  # spent in this session (reused runs cost nothing)
    reused: int = 0  # runs taken from the journal or earlier bisections
    artifact: str = ""
    foreign: list[str] = field(default_factory=list)  # unrelated splats seen

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["counts"] = {"total": self.counts.total, "bad": self.counts.bad,
                       "good": self.counts.good, "infra": self.counts.infra,
                       "other": self.counts.other}
        d["confidence"] = round(self.confidence, 4)
        for k in ("build_seconds", "test_seconds", "seconds"):
            d[k] = round(d[k], 1)
        return d

    def line(self) -> str:
        conf = f", confidence {self.confidence:.2f}" if self.confidence < 1.0 else ""
        cost = (f"{self.seconds:.0f}s (build {self.build_seconds:.0f}s, "
                f"test {self.test_seconds:.0f}s)" if self.seconds else "from the journal")
        return (f"{self.name[:60]:60} {self.verdict:4} {self.counts.text()}{conf} [{cost}]"
                + (f" — {self.why}" if self.why and self.verdict == "skip" else ""))


@dataclass
class Result:
    """What the bisection found, and everything needed to trust it or redo it."""

    kind: str  # culprit, inconclusive, range, endpoints
    mode: str  # git, versions
    message: str
    first_bad: str | None = None
    subject: str = ""
    confidence: float = 0.0
    candidates: list[str] = field(default_factory=list)
    last_good: str | None = None
    steps: list[Step] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    diffstat: str = ""
    reproducer: str = ""
    next_command: str = ""
    revert: dict[str, Any] | None = None
    setup: dict[str, Any] = field(default_factory=dict)
    wall_seconds: float = 0.0

    @property
    def median_step_seconds(self) -> float:
        worked = [s.seconds for s in self.steps if s.seconds > 0 and s.role == "step"]
        return statistics.median(worked) if worked else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "mode": self.mode, "message": self.message,
            "first_bad": self.first_bad, "subject": self.subject,
            "confidence": round(self.confidence, 4), "threshold": THRESHOLD,
            "candidates": self.candidates, "last_good": self.last_good,
            "steps": [s.to_dict() for s in self.steps], "warnings": self.warnings,
            "diffstat": self.diffstat, "reproducer": self.reproducer,
            "next_command": self.next_command, "revert": self.revert, "setup": self.setup,
            "wall_seconds": round(self.wall_seconds, 1),
            "median_step_seconds": round(self.median_step_seconds, 1),
            "report": self.report_section(),
        }

    def report_section(self) -> dict[str, Any]:
        """A section the HTML report renders: a title, summary lines and one table."""
        return {
            "title": f"Bisection: {self.message}",
            "summary": self.summary_lines(),
            "warnings": self.warnings,
            "table": {
                "columns": ["point", "role", "verdict", "runs", "confidence", "seconds", "why"],
                "rows": [[s.name, s.role, s.verdict, s.counts.text(), round(s.confidence, 3),
                          round(s.seconds, 1), s.why] for s in self.steps],
            },
        }

    def summary_lines(self) -> list[str]:
        """The result without the path taken (the report's table) and the commands."""
        out = [f"bisection: {self.message}"]
        if self.first_bad and self.kind == "culprit":
            out.append(f"first bad: {self.first_bad} {self.subject}".rstrip())
        if self.kind in ("culprit", "inconclusive"):
            out.append(f"confidence: {self.confidence:.3f} (threshold {THRESHOLD})")
        if self.candidates:
            out.append("the first bad one is one of: " + ", ".join(self.candidates))
        if self.last_good:
            out.append(f"last good: {self.last_good}")
        if self.revert is not None:
            out.append(f"revert check: {self.revert.get('summary', '')}")
        if self.diffstat:
            out += ["diffstat:", *(f"  {ln}" for ln in self.diffstat.splitlines())]
        if self.median_step_seconds:
            out.append(f"median step: {self.median_step_seconds:.1f}s, "
                       f"wall {self.wall_seconds:.0f}s")
        return out

    def lines(self) -> list[str]:
        out = [f"bisection: {self.message}"]
        if self.first_bad and self.kind == "culprit":
            out.append(f"  {self.first_bad} {self.subject}".rstrip())
        if self.kind in ("culprit", "inconclusive"):
            out.append(f"confidence: {self.confidence:.3f} (threshold {THRESHOLD})")
        if self.candidates:
            out.append("the first bad one is one of:")
            out += [f"  {c}" for c in self.candidates]
        out.append("path taken:")
        out += [f"  {s.role:13} {s.line()}" for s in self.steps]
        if self.diffstat:
            out.append("diffstat:")
            out += [f"  {ln}" for ln in self.diffstat.splitlines()]
        for w in self.warnings:
            out.append(f"warning: {w}")
        if self.revert is not None:
            out.append(f"revert check: {self.revert.get('summary', '')}")
        if self.reproducer:
            out.append(f"reproduce: {self.reproducer}")
        if self.next_command:
            out.append(f"go on with: {self.next_command}")
        if self.median_step_seconds:
            out.append(f"median step: {self.median_step_seconds:.1f}s, "
                       f"wall {self.wall_seconds:.0f}s")
        return out
