"""A run's summary: counts by verdict, spec deviations, phase times; the closing lines."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from lab import atomic
from lab.errors import EXIT_NOTHING_TESTED
from lab.results.record import phase_times, read_records
from lab.results.verdict import VERDICTS, Verdict, exit_code


def summarize(run_dir: Path, *, wall: float | None = None) -> dict[str, Any]:
    """Counts by verdict, spec deviations and phase times; also written to summary.json."""
    records = read_records(run_dir)
    counts = Counter(r.verdict for r in records)
    summary = {
        "run_dir": str(run_dir),
        "counts": {v: counts.get(v, 0) for v in VERDICTS},
        "deviations": [{"test": r.test, "note": note} for r in records for note in r.deviations],
        "phases": phase_times(run_dir),
        "wall": wall,
        "kernels": sorted({r.kernel.get("spec", "?") for r in records}),
        "skip_reasons": dict(Counter(r.reason for r in records
                                     if r.verdict == Verdict.SKIP).most_common()),
        "exit_code": exit_code(r.verdict for r in records),
    }
    atomic.write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The human summary printed at the end of a run."""
    counts = summary["counts"]
    lines = ["verdicts: " + (", ".join(f"{n} {v}" for v, n in counts.items() if n) or "none")]
    if summary["exit_code"] == EXIT_NOTHING_TESTED:
        lines.append("nothing was tested: every selected test was skipped; the reasons:")
        lines += [f"  {n} x {why}" for why, n in summary.get("skip_reasons", {}).items()]
    phases = summary["phases"]
    if phases:
        lines.append("phases: " + ", ".join(f"{p} {s:.1f}s" for p, s in phases.items()))
    devs = summary["deviations"]
    lines.append(f"spec deviations: {len(devs)}")
    lines += [f"  - {d['test']}: {d['note']}" for d in devs]
    if summary.get("wall") is not None:
        lines.append(f"wall time: {summary['wall']:.1f}s")
    lines.append(f"run directory: {summary['run_dir']}")
    return lines
