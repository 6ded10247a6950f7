"""A run directory and the records in it.

Layout of ``results/<run-id>/``::

    command.txt     the exact command that reproduces the run
    results.jsonl   one record per test, appended and fsynced as each test ends
    phases.jsonl    one line per timed phase (fetch, boot, agent, suite)
    junit.xml       pytest's JUnit report
    console-*.log   each VM's console from its first byte
    summary.json    counts by verdict, deviations, phase times (written last)

Verdicts: PASS, FAIL, SKIP (with reason), CRASH (fatal splat or the kernel
died), HANG (a call timed out), INFRA (the machinery failed).  ``exit_code()``
maps a run to the exit status CI and bisection rely on.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab.errors import EXIT_INFRA_ERROR, EXIT_OK, EXIT_TEST_FAILED

VERDICTS = ("PASS", "FAIL", "SKIP", "CRASH", "HANG", "INFRA")


@dataclass
class Record:
    """The result of one test on one kernel."""

    test: str
    verdict: str
    duration: float
    kernel: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    claim: str = ""
    deviations: list[str] = field(default_factory=list)
    splats: list[dict[str, Any]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    excerpt: str = ""  # console lines behind a CRASH, HANG or INFRA verdict
    finished: float = field(default_factory=time.time)


def new_run_dir(root: Path, label: str) -> Path:
    """A fresh run directory under ``root``, named by UTC time and ``label``."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    safe = re.sub(r"[^A-Za-z0-9_.+-]+", "_", label).strip("_") or "run"
    path = root / f"{stamp}-{safe}"
    n = 1
    while path.exists():
        n += 1
        path = root / f"{stamp}-{safe}-{n}"
    path.mkdir(parents=True)
    return path


def _append_line(path: Path, obj: dict[str, Any]) -> None:
    # One write + fsync per line: a killed lab loses at most the line being written.
    line = json.dumps(obj, sort_keys=True) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def append_record(run_dir: Path, record: Record) -> None:
    _append_line(run_dir / "results.jsonl", asdict(record))


def append_phase(run_dir: Path, phase: str, seconds: float, **detail: Any) -> None:
    _append_line(run_dir / "phases.jsonl", {"phase": phase, "seconds": round(seconds, 3),
                                            **detail})


def has_phase(run_dir: Path, phase: str, **detail: Any) -> bool:
    """Whether a phase with these details is already recorded (lab run fetches before pytest)."""
    return any(d.get("phase") == phase and all(d.get(k) == v for k, v in detail.items())
               for d in _read_lines(run_dir / "phases.jsonl"))


def _read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a torn last line from a killed run
    return out


def read_records(run_dir: Path) -> list[Record]:
    return [Record(**d) for d in _read_lines(run_dir / "results.jsonl")]


def phase_times(run_dir: Path) -> dict[str, float]:
    totals: dict[str, float] = {}
    for entry in _read_lines(run_dir / "phases.jsonl"):
        totals[entry["phase"]] = totals.get(entry["phase"], 0.0) + float(entry["seconds"])
    return totals


def exit_code(records: list[Record]) -> int:
    """0 all passed (skips allowed), 1 a test failed, 3 the machinery failed."""
    verdicts = {r.verdict for r in records}
    if "INFRA" in verdicts:
        return EXIT_INFRA_ERROR
    if verdicts & {"FAIL", "CRASH", "HANG"}:
        return EXIT_TEST_FAILED
    return EXIT_OK


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
        "exit_code": exit_code(records),
    }
    tmp = run_dir / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    tmp.replace(run_dir / "summary.json")
    return summary


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The human summary printed at the end of a run."""
    counts = summary["counts"]
    lines = [
        "verdicts: " + ", ".join(f"{n} {v}" for v, n in counts.items() if n) or "no tests ran",
    ]
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
