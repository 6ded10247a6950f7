"""A run directory and the records in it.

Layout of ``results/<run-id>/``::

    command.txt     the command that reproduces the run, pinned (lab.results.reproduce),
                    and the command as given
    results.jsonl   one record per test, appended and fsynced as each test ends
    phases.jsonl    one line per timed phase (fetch, slot-wait, boot, agent, suite)
    timeline.jsonl  each boot's events, QEMU start to the agent's hello (lab.vm.timeline)
    junit.xml       pytest's JUnit report
    console-*.log   each VM's console from its first byte
    summary.json    counts by verdict, deviations, phase times (written last)
    stopped.json    why the lab stopped the run early, and the exit status that means
    interrupted.jsonl  each test Ctrl-C cut short: its phase, how long that had run, and
                    the splats on the console since the test began (its NOTRUN or
                    CRASH record says so)

What a verdict means is lab.results.verdict's; the summary is lab.results.summary's.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab import atomic


@dataclass
class Record:
    """The result of one test on one kernel."""

    test: str
    verdict: str
    duration: float
    kernel: dict[str, Any] = field(default_factory=dict)
    cell: str = ""  # the matrix cell: kernel spec and variant (lab.results.cell)
    reason: str = ""
    claim: str = ""
    deviations: list[str] = field(default_factory=list)  # where the kernel and the spec differ
    # Values measured on this kernel that no source confirms (listed beside deviations,
    # never asserted as truth).
    observed: list[str] = field(default_factory=list)
    splats: list[dict[str, Any]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    excerpt: str = ""  # console lines behind a CRASH, HANG or INFRA verdict
    # The test that ran before on the same guest, named when a splat came so early in
    # this test's window that it may be that test's deferred work.
    previous_test: str = ""
    finished: float = field(default_factory=time.time)
    # The accelerator the test's guest ran on and why (lab.vm.accel: name, mode,
    # reason); empty for a test that never had a guest.
    accel: dict[str, Any] = field(default_factory=dict)
    # Which repetition of the test this is (`lab run --repeat N`: 1..N); 0 when the run
    # ran each test once.  The repetitions share the test id.
    repeat: int = 0


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


def append_timeline(run_dir: Path, lines: list[dict[str, Any]]) -> None:
    for line in lines:
        _append_line(run_dir / "timeline.jsonl", line)


INTERRUPTED = "interrupted.jsonl"
# What the kernel printed that no test's verdict holds: a splat on the console that no
# window saw, a hung task that began in a test whose record was already written.
FINDINGS = "findings.jsonl"


def append_finding(run_dir: Path, entry: dict[str, Any]) -> None:
    _append_line(run_dir / FINDINGS, entry)


def read_findings(run_dir: Path) -> list[dict[str, Any]]:
    return read_lines(run_dir / FINDINGS)



def append_interrupted(run_dir: Path, entry: dict[str, Any]) -> None:
    _append_line(run_dir / INTERRUPTED, entry)


def read_interrupted(run_dir: Path) -> list[dict[str, Any]]:
    return read_lines(run_dir / INTERRUPTED)


def read_timeline(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Each boot's events, by VM name, in the order they happened."""
    boots: dict[str, list[dict[str, Any]]] = {}
    for line in read_lines(run_dir / "timeline.jsonl"):
        boots.setdefault(str(line["vm"]), []).append(line)
    return boots


def has_phase(run_dir: Path, phase: str, **detail: Any) -> bool:
    """Whether a phase with these details is already recorded (lab run fetches before pytest)."""
    return any(d.get("phase") == phase and all(d.get(k) == v for k, v in detail.items())
               for d in read_lines(run_dir / "phases.jsonl"))


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a torn last line from a killed run
    return out


_FIELDS = {f for f in Record.__dataclass_fields__}


def read_records(run_dir: Path) -> list[Record]:
    # Fields this version does not know (a newer lab wrote them) are left out.
    return [Record(**{k: v for k, v in d.items() if k in _FIELDS})
            for d in read_lines(run_dir / "results.jsonl")]


def phase_times(run_dir: Path) -> dict[str, float]:
    totals: dict[str, float] = {}
    for entry in read_lines(run_dir / "phases.jsonl"):
        totals[entry["phase"]] = totals.get(entry["phase"], 0.0) + float(entry["seconds"])
    return totals


STOPPED = "stopped.json"


def write_stop(run_dir: Path, *, exit_code: int, reason: str) -> None:
    """Note that the lab stopped the run (a user error found mid-run, the reboot limit).

    The first stop wins: later workers stopping for the same cause do not rewrite it.
    """
    path = run_dir / STOPPED
    if not path.exists():
        atomic.write_text(path, json.dumps({"exit_code": exit_code, "reason": reason}) + "\n")


def read_stop(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / STOPPED
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data
