"""Progress lines per cell: counts, totals from matrix.json, ETA, throttling."""

from __future__ import annotations

from pathlib import Path

from records import rec

from lab.results.matrix import Matrix, write
from lab.run.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_per_cell(tmp_path: Path) -> None:
    tests = [rec(f"t{n}", "PASS", cell) for n in range(4) for cell in ("debian:7.2", "debian:6.1")]
    write(tmp_path, Matrix(cells=[], suite=[], expected=[(r.cell, r.test) for r in tests],
                           assigned=[(r.cell, r.test) for r in tests]))
    lines: list[str] = []
    clock = Clock()
    p = Progress(tmp_path, interval=10.0, write=lines.append, clock=clock)
    p.ended(rec("t0", "PASS"))  # duration 0.5 s: ETA 3 x 0.5 s before there is a rate
    assert lines == ["kernel-lab: [debian:7.2] 1/4 (1 PASS) ETA 0:02"]
    clock.now += 20
    p.ended(rec("t1", "FAIL"))
    assert lines[-1] == "kernel-lab: [debian:7.2] 2/4 (1 FAIL, 1 PASS) ETA 0:40"
    clock.now += 1
    p.ended(rec("t0", "SKIP", "debian:6.1"))
    p.ended(rec("t2", "PASS"))  # within the interval for debian:7.2: no line
    assert len(lines) == 3 and lines[-1].startswith("kernel-lab: [debian:6.1] 1/4 (1 SKIP)")
    clock.now += 1
    p.ended(rec("t3", "PASS"))  # the cell completes: always a line
    assert lines[-1] == "kernel-lab: [debian:7.2] 4/4 (1 FAIL, 3 PASS) done"


def test_without_a_matrix_counts_only(tmp_path: Path) -> None:
    lines: list[str] = []
    p = Progress(tmp_path, interval=0, write=lines.append)
    p.ended(rec("t0", "PASS"))
    assert lines == ["kernel-lab: [debian:7.2] 1 (1 PASS)"]
