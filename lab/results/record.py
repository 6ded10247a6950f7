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
from lab.errors import UserError
from lab.results.verdict import VERDICTS


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



AFTERMATH = "aftermath.jsonl"  # a worker's aftermath entries no report carried


def append_aftermath(run_dir: Path, entry: dict[str, Any]) -> None:
    _append_line(run_dir / AFTERMATH, entry)


def read_aftermath(run_dir: Path) -> list[dict[str, Any]]:
    return read_lines(run_dir / AFTERMATH)


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
    # Phases, timelines, journals: auxiliary lines, a torn or foreign one is left out.
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line from a killed run
        if isinstance(entry, dict):
            out.append(entry)
    return out


_FIELDS = {f for f in Record.__dataclass_fields__}
_NUMBER = (int, float)
# Each field's JSON type, and the words an error uses for it.
_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "test": ((str,), "a string"), "verdict": ((str,), "a string"),
    "duration": (_NUMBER, "a number"), "kernel": ((dict,), "an object"),
    "cell": ((str,), "a string"), "reason": ((str,), "a string"),
    "claim": ((str,), "a string"), "deviations": ((list,), "a list"),
    "observed": ((list,), "a list"), "splats": ((list,), "a list"),
    "data": ((dict,), "an object"), "excerpt": ((str,), "a string"),
    "previous_test": ((str,), "a string"), "finished": (_NUMBER, "a number"),
    "accel": ((dict,), "an object"), "repeat": ((int,), "an integer"),
}
_FIX = "give a results.jsonl that `lab run` or `lab merge` wrote"


def record_of(data: Any, where: str) -> Record:
    """A record from one line's JSON, checked; UserError naming ``where`` (FILE:LINE)."""
    if not isinstance(data, dict):
        raise UserError(f"{where}: not a JSON record (an object with test, verdict, "
                        f"duration); {_FIX}")
    if not isinstance(data.get("test"), str) or not data["test"]:
        raise UserError(f"{where}: no test id (\"test\"); {_FIX}")
    if "verdict" not in data or data["verdict"] not in VERDICTS:
        raise UserError(f"{where}: unknown verdict {data.get('verdict')!r} in "
                        f"{data['test']}; a record's verdict is one of {', '.join(VERDICTS)}")
    data.setdefault("duration", 0.0)
    for key, value in data.items():
        types, words = _TYPES.get(key, ((object,), ""))
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise UserError(f"{where}: {key} must be {words}, not {value!r:.60} "
                            f"({data['test']}); {_FIX}")
    # Fields this version does not know (a newer lab wrote them) are left out.
    return Record(**{k: v for k, v in data.items() if k in _FIELDS})


@dataclass
class Loaded:
    """A run's records, and the torn last line left out (a run killed while writing)."""

    records: list[Record]
    torn: str = ""  # "FILE:LINE: ..." when a torn last line was left out


def load_records(run_dir: Path, *, torn_end_ok: bool = False) -> Loaded:
    """The run's records, each line checked (``record_of``): a line that is not a record
    is a UserError naming FILE:LINE.  A last line cut short (no newline, not JSON: the
    writer was killed) is left out and said so when ``torn_end_ok`` (a merge makes its
    test MISS from the matrix), else it is an error too."""
    path = run_dir / "results.jsonl"
    if not path.exists():
        return Loaded([])
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    lines = raw.split(b"\n")
    out = Loaded([])
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            data = json.loads(line.decode())
        except (UnicodeDecodeError, json.JSONDecodeError):
            last = n == len(lines)  # no newline after it: the write never finished
            if last:
                torn = f"{where}: a torn last line (the run was killed while writing it)"
                if torn_end_ok:
                    out.torn = torn
                    continue
                raise UserError(f"{torn}; remove that line, or rerun the test") from None
            raise UserError(f"{where}: not a JSON record; {_FIX}") from None
        out.records.append(record_of(data, where))
    return out


def read_records(run_dir: Path) -> list[Record]:
    """The run's records, every line checked (``load_records``)."""
    return load_records(run_dir).records


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
