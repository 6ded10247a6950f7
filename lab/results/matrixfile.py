"""What a run was asked to test: its cells, suite, selection and shard (``matrix.json``).

Written during collection, before any test runs, so that even a shard that
dies early says what it was expected to run.  ``expected`` is the whole matrix
(every cell x test the arguments select, all shards together); ``assigned`` is
this shard's part of it.  ``lab merge`` combines shards only when everything but
the shard index agrees (the run options too: ``--repeat``, the guest's options,
pytest's extra arguments, the known issues), and reports every expected test that no
shard reported.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab import atomic
from lab.errors import UserError

MATRIX = "matrix.json"
# The format of a run directory's results (matrix.json and the records beside it).  A
# reader refuses a newer format than its own, in one line, rather than misread it, and
# reads an older one as its own ("migrates" it):
#   1  no "format" key (before 2026-12-07);
#   2  "format" written; a shard may be split by cell ("I/N:cell", lab.run.shard), which a
#      reader of format 1 cannot parse.  Everything else as in 1: reading 1 as 2 changes
#      nothing.
#   3  records cite a claim by its id, claims.json lists "id" (lab.results.claims), which
#      a reader of 2 would not join: reading 2 as 3 maps its claim texts and keys to ids.
FORMAT = 3

# What must agree between shards of one matrix, with the words that name it.
COMPATIBLE = {
    "cells": "cells (--kernel x --variant)",
    "suite": "suite",
    "keyword": "-k expression",
    "markexpr": "-m expression",
    "select": "node ids",
    "shard_total": "shard count",
    "shard_by": "shard split (I/N by test, I/N:cell by cell)",
}
# The run options (Matrix.options) that must agree too, with their words; an option
# this version does not know is compared as it is.
COMPATIBLE_OPTIONS = {
    "repeat": "--repeat",
    "guest": "guest options (--accel, --cpus, --memory, --append, timeouts)",
    "pytest_args": "pytest arguments after --",
    "known_issues": "known issues (--known-issues)",
    "lab_suite": "the lab's own scenarios",
}


@dataclass
class Matrix:
    """A run's matrix: plain data, as in matrix.json."""

    cells: list[dict[str, Any]]  # {"label", "spec", "variant"} in the order given
    suite: list[str]  # the paths pytest collected (relative to rootdir when inside it)
    expected: list[tuple[str, str]]  # (cell label, test id), the whole matrix
    assigned: list[tuple[str, str]]  # this shard's part (all of expected when unsharded)
    keyword: str = ""
    markexpr: str = ""
    shard: str | None = None  # "I/N", or "I/N:cell" split by cell (lab.run.shard)
    rootdir: str = ""
    merged_from: list[dict[str, Any]] = field(default_factory=list)
    select: list[str] = field(default_factory=list)  # `lab run -- NODEID...`, rootdir-relative
    # How the run's guests were booted and its tests repeated: {"guest": GuestOptions as a
    # dict, "repeat": N}.  Reproducers and `lab rerun` take them from here.
    options: dict[str, Any] = field(default_factory=dict)
    format: int = FORMAT  # the results' format (FORMAT above); 1 when matrix.json has none

    @property
    def shard_total(self) -> int:
        return int(self.shard.partition(":")[0].split("/")[1]) if self.shard else 1

    @property
    def shard_index(self) -> int:
        return int(self.shard.split("/")[0]) if self.shard else 1

    @property
    def shard_by(self) -> str:
        """How the shards split the matrix: "test" (a hash of cell and test) or "cell"."""
        return (self.shard.partition(":")[2] or "test") if self.shard else "test"

    def cell_labels(self) -> list[str]:
        return [str(c["label"]) for c in self.cells]

    def differences(self, other: Matrix) -> list[str]:
        """What keeps ``self`` and ``other`` from being shards of one matrix, in words."""
        out = []
        for key, words in COMPATIBLE.items():
            mine, theirs = getattr(self, key), getattr(other, key)
            if mine != theirs:
                out.append(f"{words}: {_show(mine)} vs {_show(theirs)}")
        for key in sorted(self.options.keys() | other.options.keys(),
                          key=lambda k: (k not in COMPATIBLE_OPTIONS, k)):
            mine, theirs = self.options.get(key), other.options.get(key)
            if isinstance(mine, dict) and isinstance(theirs, dict):
                # Only what differs ({"cpus": 2} vs {"cpus": 4}), not every guest option.
                keys = {k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k)}
                mine = {k: v for k, v in mine.items() if k in keys}
                theirs = {k: v for k, v in theirs.items() if k in keys}
            if mine != theirs:
                out.append(f"{COMPATIBLE_OPTIONS.get(key, key)}: {_show(mine)} vs "
                           f"{_show(theirs)}")
        if not out and set(self.expected) != set(other.expected):
            only_a = sorted(set(self.expected) - set(other.expected))
            only_b = sorted(set(other.expected) - set(self.expected))
            example = (only_a or only_b)[0]
            out.append(f"expected tests: {len(only_a)} only in the first, {len(only_b)} only "
                       f"in the second (e.g. {example[1]} on {example[0]}): a different "
                       "checkout of the scenarios")
        return out


def _show(value: Any) -> str:
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return "[" + ", ".join(str(v.get("label")) for v in value) + "]"
    return json.dumps(value, sort_keys=True)


def write(run_dir: Path, matrix: Matrix) -> None:
    data = asdict(matrix)
    data["expected"] = [list(p) for p in matrix.expected]
    data["assigned"] = [list(p) for p in matrix.assigned]
    atomic.write_text(run_dir / MATRIX, json.dumps(data, indent=1, sort_keys=True) + "\n")


def from_dict(data: dict[str, Any]) -> Matrix:
    return Matrix(
        cells=list(data["cells"]),
        suite=list(data["suite"]),
        expected=[(str(c), str(t)) for c, t in data["expected"]],
        assigned=[(str(c), str(t)) for c, t in data["assigned"]],
        keyword=str(data.get("keyword") or ""),
        markexpr=str(data.get("markexpr") or ""),
        shard=data.get("shard"),
        rootdir=str(data.get("rootdir") or ""),
        merged_from=list(data.get("merged_from") or []),
        select=[str(s) for s in data.get("select") or []],
        options=dict(data.get("options") or {}),
        format=int(data.get("format") or 1),
    )


def format_of(run_dir: Path) -> int:
    """The format of ``run_dir``'s results: matrix.json's, 1 without one (or an older
    matrix.json, or a torn one: the readers say what is wrong with it)."""
    try:
        data = json.loads((run_dir / MATRIX).read_text())
        return int(data.get("format") or 1) if isinstance(data, dict) else 1
    except (OSError, ValueError, TypeError):
        return 1


def check_format(run_dir: Path, *, what: str) -> None:
    """A UserError when ``run_dir`` holds results in a format newer than this lab's
    (an older one is read as this one: see FORMAT)."""
    found = format_of(run_dir)
    if found > FORMAT:
        raise UserError(f"{what} {run_dir} holds results of format {found}, and this lab "
                        f"reads formats 1 to {FORMAT}; use a lab as new as the one that "
                        "wrote them")


def read(run_dir: Path) -> Matrix | None:
    """The run's matrix, or None for a run directory without one (or a torn one)."""
    path = run_dir / MATRIX
    if not path.is_file():
        return None
    try:
        return from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError):
        return None
