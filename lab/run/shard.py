"""CI shards: ``--shard I/N`` runs a deterministic 1/N of the matrix's cells x tests.

Split by test (``I/N``, the default): a test's shard is a stable hash of its
cell and test id modulo N (as pytest-shard does), not its place in a list: the
same arguments give every shard runner the same split, and adding a test moves
no other test.  Every shard then boots every cell.

Split by cell (``I/N:cell``): a shard runs every test of its own cells only, the
cells given to the shards in turn in the matrix's order (cell k, from 0, is shard
k mod N + 1), so that a shard boots (and needs the kernels of) only its own cells
and N shards over N cells give each shard one cell.  The order is the arguments'
(``--kernel`` x ``--variant``), the same on every runner.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from lab.errors import UserError

BY_TEST = "test"
BY_CELL = "cell"


def stable_hash(text: str) -> int:
    """A hash that is the same in every process and on every machine (unlike hash())."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1-based) of ``total``, split ``by`` test or by cell."""

    index: int
    total: int
    by: str = BY_TEST

    def __str__(self) -> str:
        return f"{self.index}/{self.total}" + (f":{self.by}" if self.by != BY_TEST else "")

    def takes(self, cell: str, test: str, *, cells: Sequence[str] = ()) -> bool:
        """Whether this shard runs ``test`` of ``cell`` (``cells``: the matrix's cell
        labels in order, which a split by cell follows)."""
        if self.by == BY_CELL:
            return self.takes_cell(cell, cells=cells)
        return stable_hash(f"{cell}\0{test}") % self.total == self.index - 1

    def takes_cell(self, cell: str, *, cells: Sequence[str]) -> bool:
        """Whether this shard runs any test of ``cell``: in a split by test, every shard
        may; in a split by cell, the one whose turn the cell's place in ``cells`` is."""
        if self.by != BY_CELL:
            return True
        place = cells.index(cell) if cell in cells else stable_hash(cell)
        return place % self.total == self.index - 1


_FORM = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*(?::\s*([a-z]+)\s*)?$")


def parse_shard(text: str) -> Shard:
    """``"2/4"`` → Shard(2, 4); ``"2/4:cell"`` → split by cell; anything else is a
    UserError saying what is right."""
    m = _FORM.match(text)
    if m is None:
        raise UserError(f"--shard {text!r} is not I/N; write e.g. --shard 1/4 "
                        "(shard I of N, 1 <= I <= N; add :cell to split by cell, 1/4:cell)")
    index, total = int(m.group(1)), int(m.group(2))
    by = m.group(3) or BY_TEST
    if by not in (BY_TEST, BY_CELL):
        raise UserError(f"--shard {text}: unknown split {by!r}; write I/N (by test) or "
                        "I/N:cell (by cell)")
    if total < 1 or not 1 <= index <= total:
        raise UserError(f"--shard {text} is out of range; I must be between 1 and N "
                        f"(1/{max(total, 1)} … {max(total, 1)}/{max(total, 1)})")
    return Shard(index, total, by)
