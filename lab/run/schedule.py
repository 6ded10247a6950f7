"""How xdist hands a matrix to its workers: by cell, each cell to one worker (or a few).

A work unit is a cell's tests, so a worker boots the cell's guest once and
serves all of them; with fewer cells than workers each cell is split into
sub-units by a stable hash of the test id and its repetition (``--repeat``: the
50 repetitions of one race spread over the cell's workers), and each sub-unit's
worker boots its own guest.  Units go out biggest first (xdist's loadscope order), one at a time
as workers run low.

This is xdist's loadscope scheduler with the lab's notion of scope.  It does
not use ``--dist loadgroup``: that works by rewriting node ids from an
``xdist_group`` mark, which pytest 9.2 no longer lets it do (the ids stay
unchanged, and the tests spread test by test over every worker, so every
worker boots every kernel: pytest-dev/pytest-xdist#1386).  The scope of a test
comes instead from matrix.json, which every worker writes during collection,
before the controller schedules anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.results import matrixfile
from lab.run.cells import plain_nodeid, repeat_of, splits
from lab.run.shard import stable_hash


def scopes(matrix: matrixfile.Matrix, workers: int) -> dict[tuple[str, int], str]:
    """(test id, repetition) → work unit name (``c<cell index>s<sub-unit>``) for this
    run's tests; the repetition is 0 when the run does not repeat its tests."""
    index = {label: i for i, label in enumerate(matrix.cell_labels())}
    # The cells this run has tests of: a shard split by cell has only its own, which its
    # workers share (split), rather than one of them serving all while the others idle.
    present = {cell for cell, _ in matrix.assigned if cell in index}
    n = splits(len(present), workers)
    repeat = int(matrix.options.get("repeat") or 1)
    reps = range(1, repeat + 1) if repeat > 1 else [0]
    out = {}
    for cell, test in dict.fromkeys(matrix.assigned):
        if cell not in index:
            continue
        for rep in reps:
            # A test alone hashes as before (the split stays what it was without --repeat).
            sub = stable_hash(f"{test}\0{rep}" if rep else test) % n if n > 1 else 0
            out[test, rep] = f"c{index[cell]}s{sub}"
    return out


class CellScheduler:
    """The controller's hook that replaces xdist's scheduler with the cell scheduler."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def pytest_xdist_make_scheduler(self, config: Any, log: Any) -> Any:
        from xdist.scheduler import LoadScopeScheduling

        run_dir = self.run_dir

        class CellScheduling(LoadScopeScheduling):  # type: ignore[misc]
            """loadscope, with a test's scope read from matrix.json."""

            _scopes: dict[tuple[str, int], str] | None = None

            def _split_scope(self, nodeid: str) -> str:
                if self._scopes is None:
                    m = matrixfile.read(run_dir)
                    self._scopes = scopes(m, self.numnodes) if m is not None else {}
                # matrix.json keeps ids as records do: a repetition's is its test's.
                return self._scopes.get((plain_nodeid(nodeid), repeat_of(nodeid)), nodeid)

        return CellScheduling(config, log)
