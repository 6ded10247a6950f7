"""How xdist hands a matrix to its workers: by cell, each cell to one worker (or a few).

A work unit is a cell's tests, so a worker boots the cell's guest once and
serves all of them; with fewer cells than workers each cell is split into
sub-units by a stable hash of the test id, and each sub-unit's worker boots its
own guest.  Units go out biggest first (xdist's loadscope order), one at a time
as workers run low.

Within a unit, the race suites (loops that keep both of a guest's vCPUs busy) go
first on even workers and last on odd ones.  Side by side, workers start their
cells together; in the same order both guests would race at once, fighting over
the host's cores (an iteration-bound loop then takes twice as long), and later
both idle through the light tests.  In opposite orders one races while the other
runs the light tests.  The order of a cell's tests is otherwise the collection
order, and each module stays in one piece (its fixtures are set up once).

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

from lab.results import matrix as matrix_file
from lab.run.cells import splits
from lab.run.shard import stable_hash

# Suites whose tests keep both vCPUs busy for seconds: the race loops.
BUSY_SUITES = ("scenarios/races/",)


def scopes(matrix: matrix_file.Matrix, workers: int) -> dict[str, str]:
    """Test id → work unit name (``c<cell index>s<sub-unit>``) for this run's tests."""
    index = {label: i for i, label in enumerate(matrix.cell_labels())}
    n = splits(len(index), workers)
    out = {}
    for cell, test in matrix.assigned:
        if cell in index:
            sub = stable_hash(test) % n if n > 1 else 0
            out[test] = f"c{index[cell]}s{sub}"
    return out


def busy_first(nodeids: list[str], first: bool) -> list[str]:
    """``nodeids`` with the busy suites' tests first (``first``) or last, each part in
    its own order."""
    busy = [n for n in nodeids if n.startswith(BUSY_SUITES)]
    light = [n for n in nodeids if not n.startswith(BUSY_SUITES)]
    return busy + light if first else light + busy


class CellScheduler:
    """The controller's hook that replaces xdist's scheduler with the cell scheduler."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def pytest_xdist_make_scheduler(self, config: Any, log: Any) -> Any:
        from xdist.scheduler import LoadScopeScheduling

        run_dir = self.run_dir

        class CellScheduling(LoadScopeScheduling):  # type: ignore[misc]
            """loadscope, with a test's scope read from matrix.json."""

            _scopes: dict[str, str] | None = None

            def _split_scope(self, nodeid: str) -> str:
                if self._scopes is None:
                    m = matrix_file.read(run_dir)
                    self._scopes = scopes(m, self.numnodes) if m is not None else {}
                return self._scopes.get(nodeid, nodeid)

            def _assign_work_unit(self, node: Any) -> None:
                # xdist's own, with the unit's order from busy_first.
                assert self.workqueue
                scope, work_unit = self.workqueue.popitem(last=False)
                self.assigned_work.setdefault(node, {})[scope] = work_unit
                collection = self.registered_collections[node]
                todo = [nodeid for nodeid, completed in work_unit.items() if not completed]
                even = self.nodes.index(node) % 2 == 0
                node.send_runtest_some([collection.index(n) for n in busy_first(todo, even)])

        return CellScheduling(config, log)
