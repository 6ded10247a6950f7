"""The matrix at collection time: matrix.json written, the shard's part kept.

``Selection`` runs last in collection, after ``-k`` and ``-m`` deselected what
they do: it writes matrix.json with the whole selected matrix (every cell x test),
then deselects what other shards run.  With xdist every worker collects and
writes the same matrix.json (atomically); the controller's scheduler reads it
(lab.run.schedule).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lab.results import matrixfile
from lab.run.cells import Cell, plain_nodeid
from lab.run.keys import item_cell
from lab.run.select import NodeId
from lab.run.shard import Shard


class Selection:
    """Records the selected matrix in matrix.json and keeps this shard's part of it."""

    def __init__(self, config: pytest.Config, *, run_dir: Path, cells: list[Cell],
                 shard: Shard | None, nodes: list[NodeId] | None = None,
                 options: dict[str, Any] | None = None) -> None:
        self.config = config
        self.run_dir = run_dir
        self.cells = cells
        self.shard = shard
        self.nodes = nodes or []
        self.options = options or {}

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        pairs = []
        for item in items:
            cell = item_cell(item)
            pairs.append((cell.label if cell is not None else "", plain_nodeid(item.nodeid)))
        labels = [c.label for c in self.cells]
        keep = [self.shard is None or self.shard.takes(*p, cells=labels) for p in pairs]
        matrixfile.write(self.run_dir, matrixfile.Matrix(
            cells=[{"label": c.label, "spec": c.spec, "variant": c.variant} for c in self.cells],
            suite=self._suite(),
            expected=pairs,
            assigned=[p for p, k in zip(pairs, keep, strict=True) if k],
            keyword=str(self.config.option.keyword or ""),
            markexpr=str(self.config.option.markexpr or ""),
            shard=str(self.shard) if self.shard is not None else None,
            rootdir=str(self.config.rootpath),
            select=[self._relative(n.path) + (f"::{n.name}" if n.name else "")
                    for n in self.nodes],
            options=self.options,
        ))
        if self.shard is not None:
            dropped = [i for i, k in zip(items, keep, strict=True) if not k]
            if dropped:
                self.config.hook.pytest_deselected(items=dropped)
            items[:] = [i for i, k in zip(items, keep, strict=True) if k]

    def _relative(self, path: Path) -> str:
        try:
            return str(path.resolve().relative_to(self.config.rootpath))
        except ValueError:
            return str(path.resolve())

    def _suite(self) -> list[str]:
        return [self._relative(Path(str(arg).split("::")[0])) for arg in self.config.args]
