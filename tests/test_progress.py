"""Progress lines per cell: counts, totals from matrix.json, ETA, throttling."""

from __future__ import annotations

from pathlib import Path

from records import rec

from lab.results.matrixfile import Matrix, write
from lab.run.progress import ETA_MIN_TESTS, Progress


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
    p.ended(rec("t0", "PASS"))  # one test is no rate: no ETA
    assert lines == ["kernel-lab: [debian:7.2] 1/4 (1 PASS)"]
    clock.now += 20
    p.ended(rec("t1", "FAIL"))
    assert lines[-1] == "kernel-lab: [debian:7.2] 2/4 (1 FAIL, 1 PASS)"
    clock.now += 1
    p.ended(rec("t0", "SKIP", "debian:6.1"))
    p.ended(rec("t2", "PASS"))  # within the interval for debian:7.2: no line
    assert len(lines) == 3 and lines[-1].startswith("kernel-lab: [debian:6.1] 1/4 (1 SKIP)")
    clock.now += 1
    p.ended(rec("t3", "PASS"))  # the cell completes: always a line
    assert lines[-1] == "kernel-lab: [debian:7.2] 4/4 (1 FAIL, 3 PASS) done"


def _progress(tmp_path: Path, total: int) -> tuple[Progress, Clock, list[str]]:
    """A Progress over one cell of ``total`` tests, its clock, and the lines it wrote."""
    tests = [rec(f"t{n}", "PASS") for n in range(total)]
    write(tmp_path, Matrix(cells=[], suite=[], expected=[(r.cell, r.test) for r in tests],
                           assigned=[(r.cell, r.test) for r in tests]))
    lines: list[str] = []
    clock = Clock()
    return Progress(tmp_path, interval=0, write=lines.append, clock=clock), clock, lines


def test_no_eta_before_enough_tests_and_time(tmp_path: Path) -> None:
    """The first tests' pace says nothing about the rest (a race loop after errno checks):
    no ETA until ETA_MIN_TESTS tests over ETA_MIN_SPAN_S seconds, then the measured rate."""
    (tmp_path / "fast").mkdir()
    p, clock, lines = _progress(tmp_path / "fast", 100)
    for n in range(ETA_MIN_TESTS + 3):  # fast tests: many done, but too little time
        clock.now += 0.1
        p.ended(rec(f"t{n}", "PASS"))
    assert all("ETA" not in line for line in lines), lines
    assert p.eta("debian:7.2") is None
    (tmp_path / "slow").mkdir()
    p, clock, lines = _progress(tmp_path / "slow", 100)
    for n in range(ETA_MIN_TESTS - 1):  # slow tests: time enough, too few tests
        clock.now += 30
        p.ended(rec(f"t{n}", "PASS"))
    assert all("ETA" not in line for line in lines), lines
    clock.now += 30
    p.ended(rec("t9", "PASS"))  # the fifth: 4 gaps of 30 s, 95 tests left
    assert p.eta("debian:7.2") == 95 * 30
    assert lines[-1].endswith(f"5/100 (5 PASS) ETA {95 * 30 // 60}:{95 * 30 % 60:02d}")


def test_without_a_matrix_counts_only(tmp_path: Path) -> None:
    lines: list[str] = []
    p = Progress(tmp_path, interval=0, write=lines.append)
    p.ended(rec("t0", "PASS"))
    assert lines == ["kernel-lab: [debian:7.2] 1 (1 PASS)"]
