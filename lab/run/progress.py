"""Progress while a matrix runs: one line per cell, done/total, verdict counts and an ETA.

Fed by the recorder (on the controller, where every worker's reports arrive)
with each record as it is written.  The totals are this run's assigned tests
from matrix.json.  A cell's line is printed when one of its tests ends, at most
every ``interval`` seconds per cell, and always when the cell completes, so a
CI log stays readable and a terminal still sees movement.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from lab.results import matrix as matrix_file
from lab.results.record import Record
from lab.results.verdict import VERDICTS


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    """Per-cell done/total and verdict counts; ``ended(record)`` after each test."""

    def __init__(self, run_dir: Path, *, interval: float = 10.0,
                 write: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.run_dir = run_dir
        self.interval = interval
        self.write = write or (lambda line: print(line, file=sys.stderr, flush=True))
        self.clock = clock
        self.totals: dict[str, int] | None = None
        self.counts: dict[str, Counter[str]] = {}
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.first_duration: dict[str, float] = {}
        self.printed: dict[str, float] = {}

    def _load_totals(self) -> dict[str, int]:
        if self.totals is None:
            m = matrix_file.read(self.run_dir)
            self.totals = dict(Counter(cell for cell, _ in m.assigned)) if m else {}
        return self.totals

    def ended(self, record: Record) -> None:
        cell = record.cell
        now = self.clock()
        counts = self.counts.setdefault(cell, Counter())
        counts[record.verdict] += 1
        self.first.setdefault(cell, now)
        self.first_duration.setdefault(cell, record.duration)
        self.last[cell] = now
        total = self._load_totals().get(cell)
        done = sum(counts.values())
        complete = total is not None and done >= total
        if complete or now - self.printed.get(cell, -1e9) >= self.interval:
            self.printed[cell] = now
            self.write(self.line(cell))

    def eta(self, cell: str) -> float | None:
        """Seconds left for ``cell`` at its rate so far, None before it has timings."""
        total = self._load_totals().get(cell)
        done = sum(self.counts.get(cell, Counter()).values())
        if total is None or done == 0:
            return None
        left = total - done
        if left <= 0:
            return 0.0
        span = self.last[cell] - self.first[cell]
        if done >= 2 and span > 0:
            return left * span / (done - 1)
        return left * self.first_duration[cell]

    def line(self, cell: str) -> str:
        counts = self.counts.get(cell, Counter())
        done = sum(counts.values())
        total = self._load_totals().get(cell)
        verdicts = ", ".join(f"{counts[v]} {v}" for v in VERDICTS if counts[v])
        eta = self.eta(cell)
        tail = "done" if total is not None and done >= total else (
            f"ETA {_clock(eta)}" if eta is not None else "")
        of = f"/{total}" if total is not None else ""
        return f"kernel-lab: [{cell or '-'}] {done}{of} ({verdicts}) {tail}".rstrip()
