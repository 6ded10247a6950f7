"""Progress while a matrix runs: one line per cell, done/total, verdict counts and an ETA.

Fed by the recorder (on the controller, where every worker's reports arrive)
with each record as it is written.  The totals are this run's assigned tests
from matrix.json.  A cell's line is printed when one of its tests ends, at most
every ``interval`` seconds per cell, and always when the cell completes, so a
CI log stays readable and a terminal still sees movement.

``terminal_writer`` is how the lab's lines reach the user from anywhere in a
run: the controller's hooks, a fixture booting a guest (pytest captures its
output), or an xdist worker (whose own terminal is gone).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.results import matrixfile
from lab.results.record import Record
from lab.results.text import printable
from lab.results.verdict import VERDICTS

# An ETA is shown only once it rests on a measured rate.  A suite's tests take from
# milliseconds (an errno check) to tens of seconds (a race loop, a slow device), so
# one test's duration says nothing about the rest: "ETA 0:01" after the first test
# was wrong by minutes.  The rate is the cell's tests per second between its first
# and its latest test, over at least ETA_MIN_TESTS tests and ETA_MIN_SPAN_S seconds.
ETA_MIN_TESTS = 5
ETA_MIN_SPAN_S = 15.0


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
        self.printed: dict[str, float] = {}

    def _load_totals(self) -> dict[str, int]:
        if self.totals is None:
            m = matrixfile.read(self.run_dir)
            self.totals = dict(Counter(cell for cell, _ in m.assigned)) if m else {}
        return self.totals

    def ended(self, record: Record) -> None:
        cell = record.cell
        now = self.clock()
        counts = self.counts.setdefault(cell, Counter())
        counts[record.verdict] += 1
        self.first.setdefault(cell, now)
        self.last[cell] = now
        total = self._load_totals().get(cell)
        done = sum(counts.values())
        complete = total is not None and done >= total
        if complete or now - self.printed.get(cell, -1e9) >= self.interval:
            self.printed[cell] = now
            self.write(self.line(cell))

    def eta(self, cell: str) -> float | None:
        """Seconds left for ``cell`` at its measured rate; None until there is one
        (ETA_MIN_TESTS tests over ETA_MIN_SPAN_S seconds)."""
        total = self._load_totals().get(cell)
        done = sum(self.counts.get(cell, Counter()).values())
        if total is None or done == 0:
            return None
        left = total - done
        if left <= 0:
            return 0.0
        span = self.last[cell] - self.first[cell]
        if done < ETA_MIN_TESTS or span < ETA_MIN_SPAN_S:
            return None
        return left * span / (done - 1)

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


def terminal_writer(config: Any) -> Callable[[str], None]:
    """Write a line to the user's terminal from a hook, a fixture or an xdist worker.

    pytest captures a fixture's output (a boot happens in one), so capture is
    suspended for the line.  The controller writes through its terminal reporter,
    which knows whether a line of dots is open; a worker has none, and writes to
    its stderr, which is the controller's terminal (its stdout is xdist's channel).
    """
    def write(line: str) -> None:
        line = printable(line)  # a boot's messages quote the guest
        capman = config.pluginmanager.getplugin("capturemanager")
        suspended = capman.global_and_fixture_disabled() if capman is not None else \
            contextlib.nullcontext()
        with suspended:
            tr = config.pluginmanager.get_plugin("terminalreporter")
            if tr is None or hasattr(config, "workerinput"):
                print(line, file=sys.stderr, flush=True)
                return
            # xdist writes its progress dots without telling the reporter a line is
            # open (without xdist, write_line's ensure_newline knows).
            open_line = int(getattr(getattr(tr, "_tw", None), "width_of_current_line", 0)
                            or 0)
            if tr.currentfspath is None and open_line:
                tr.write("\n")
            tr.write_line(line)
    return write
