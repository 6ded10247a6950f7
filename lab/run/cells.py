"""The matrix's cells (kernel x variant) and how their tests are grouped onto workers.

Every ``--kernel`` the lab builds (debian-src:, git:, worktree:, tree:) gives one
cell per ``--variant`` (``base`` when none is given), each with the
``--kconfig-add`` options composed on (``base+CONFIG_KASAN=y``); a prebuilt
kernel (Debian's, a bzImage) gives one cell and takes neither.  With xdist each cell is one work
unit (lab.run.schedule), so a worker boots the cell's guest once and serves all
of its tests; with fewer cells than workers each cell is split into ``splits``
sub-units, each booting its own guest.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from lab.errors import UserError
from lab.kernel import kconfig
from lab.kernel.spec import BUILT_KINDS, parse_spec
from lab.results.cell import cell_label, split_repeat

BASE = "base"


@dataclass(frozen=True)
class Cell:
    """One kernel spec with one config variant (None: a prebuilt kernel, used as it is)."""

    spec: str
    variant: str | None = None

    @property
    def label(self) -> str:
        return cell_label(self.spec, self.variant)

    def __str__(self) -> str:  # the test id's parameter, and what -k matches
        return self.label


def is_built(spec: str) -> bool:
    """Whether the lab builds this kernel (so that it takes a config variant)."""
    return isinstance(parse_spec(spec), BUILT_KINDS)


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(i.strip() for i in items if i.strip()))


def matrix(kernels: Sequence[str], variants: Sequence[str | None],
           kconfig_add: Sequence[str] = ()) -> list[Cell]:
    """The cells of ``--kernel`` x ``--variant``, in the order given; UserError when one is wrong.

    Variants multiply the kernels the lab builds; a variant other than ``base``
    (or an added option) with no kernel to build is one for a prebuilt kernel, and
    the error names that cell.  Each variant is composed with the added options
    (fragments read, options parsed and checked) here, before anything is fetched.
    """
    for spec in kernels:  # an empty one too: dropped, it would leave no cell at all
        parse_spec(spec)
    specs = _unique(kernels)
    for text in kconfig_add:
        kconfig.parse_addition(text)  # a bad one is named alone, not inside a variant
    given = [v for v in variants if v and v.strip()] or ([BASE] if kconfig_add else [])
    # Canonical names ("debug+aio-off" is "aio-off+debug"): one kernel, one cell.
    names = _unique([kconfig.compose(kconfig.with_additions(v, kconfig_add)).variant
                     for v in given])
    built = [s for s in specs if is_built(s)]
    if not built:
        wrong = [n for n in names if n != BASE]
        if wrong and specs:
            what, takes = ((f"--kconfig-add {kconfig_add[0]}", "added option") if kconfig_add
                           else (f"--variant {wrong[0]}", "variant"))
            raise UserError(
                f"{what} makes the cell {specs[0]} x {wrong[0]}, but {specs[0]} is a prebuilt "
                f"kernel and takes no {takes}; variants and added options apply to kernels "
                "the lab builds (debian-src:SERIES, git:PATH[@REV], worktree:PATH, tree:PATH)")
        names = []
    cells: list[Cell] = []
    for spec in specs:
        if is_built(spec):
            cells += [Cell(spec, n) for n in (names or [BASE])]
        else:
            cells.append(Cell(spec))
    labels = [c.label for c in cells]
    for label in labels:
        if labels.count(label) > 1:
            raise UserError(f"two cells are both called {label!r} (a long path is shortened "
                            "to its last parts); give kernels whose names differ")
    return cells


def splits(n_cells: int, workers: int) -> int:
    """Sub-groups per cell: enough for every worker to have one when cells are fewer."""
    if n_cells <= 0 or workers <= n_cells:
        return 1
    return math.ceil(workers / n_cells)


_GROUP_SUFFIX = re.compile(r"@[^@\]]*$")


def plain_nodeid(nodeid: str) -> str:
    """The test id a record keeps: without an "@group" that ``--dist loadgroup`` may append
    to it, nor a repetition's parameter (``--repeat``: Record.repeat says which).

    The lab schedules by cell itself (lab.run.schedule); this keeps records the
    same when someone runs the plugin with loadgroup on a pytest that still lets
    xdist rewrite ids.
    """
    return split_repeat(_GROUP_SUFFIX.sub("", nodeid))[0]


def repeat_of(nodeid: str) -> int:
    """Which repetition of its test ``nodeid`` is (0: the test is not repeated)."""
    return split_repeat(_GROUP_SUFFIX.sub("", nodeid))[1]
