"""`lab run -- NODEID...`: tests chosen by node id, as records show them or without the cell.

A node id is ``FILE.py[::NAME[::NAME]][[PARAMS]]``: the file relative to the
current directory or to the suites' checkout (where records' ids are relative
to), an absolute path, or the file alone.  Its params may be the record's
(``test_x[debian:7.2]``, ``test_x[io_setup-debian:7.2]``), or leave the cell out
(``test_x[io_setup]``, ``test_x``: every cell, every parameter), so that a
reproducer still selects its test when the kernel's label changes (a pinned
``debian:7.2.13-1`` is another label than ``debian:7.2``).

Checked twice: before anything runs, that the file exists and defines the test
(``check``: a typo costs no fetch or build), and at collection, that some test
matches (``Chooser``: a parameter only collection knows); a node id that
matches nothing is a one-line error, exit 2.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.errors import EXIT_USER_ERROR, UserError
from lab.results.cell import scenario_of, split_repeat
from lab.results.record import write_stop
from lab.run.keys import item_cell

# An argument after `--` that names a test file, with or without a test in it.  What
# follows "::" may hold spaces: a cell label from --kconfig-add CONFIG_X="a b".
_NODEID = re.compile(r"^[^-].*?\.py(?:::.*)?$")


def is_nodeid(arg: str) -> bool:
    """Whether a pytest argument is a node id (``FILE.py`` or ``FILE.py::NAME...``)."""
    return bool(_NODEID.match(arg))


@dataclass(frozen=True)
class NodeId:
    """A node id with its file found: ``path`` absolute, ``name`` after the first "::"."""

    path: Path
    name: str  # "" (every test of the file), "test_x", "test_x[io_setup]", "Cls::test_x"
    given: str

    def text(self) -> str:
        return f"{self.path}::{self.name}" if self.name else str(self.path)

    @classmethod
    def parse(cls, text: str) -> NodeId:
        path, _, name = text.partition("::")
        return cls(Path(path), name, text)


def _defines(path: Path, name: str) -> bool:
    """Whether ``path`` defines the test function or class ``name`` at its top level."""
    try:
        tree = ast.parse(path.read_text(errors="replace"))
    except SyntaxError:
        return True  # collection will say what is wrong with the file
    return any(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
               and n.name == name for n in tree.body)


def check(text: str, *, roots: Sequence[Path]) -> NodeId:
    """``text`` as a NodeId whose file exists (relative paths tried against each of
    ``roots``) and defines its test; a UserError names what is wrong."""
    file_text, _, name = text.partition("::")
    candidates = [Path(file_text).expanduser()] if Path(file_text).is_absolute() else \
        [root / file_text for root in roots]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        where = " or ".join(str(r) for r in roots)
        raise UserError(f"node id {text!r}: no file {file_text} (from {where}); give "
                        "FILE.py::TEST as the records show it")
    first = re.split(r"::|\[", name, maxsplit=1)[0]
    if first and not _defines(found, first):
        raise UserError(f"node id {text!r}: {found} defines no test {first!r}")
    return NodeId(found.resolve(), name, text)


# pytest's options whose value may look like a node id: that value is the option's.
_TAKES_A_PATH = frozenset({"--deselect", "--ignore", "--ignore-glob", "-p", "-c",
                           "--config-file", "--confcutdir", "--rootdir", "--junitxml",
                           "--junit-xml", "--log-file", "--basetemp", "-k", "-m", "-o"})


def split(args: Sequence[str], *, roots: Sequence[Path]) -> tuple[list[NodeId], list[str]]:
    """(the node ids among pytest's arguments, checked; the other arguments)."""
    ids: list[NodeId] = []
    rest: list[str] = []
    for i, arg in enumerate(args):
        if not arg.strip():  # pytest reads "" as the current directory: a whole other run
            raise UserError("an empty argument after --; give node ids (FILE.py::TEST) or "
                            "pytest's options, or nothing")
        an_option_s = bool(i) and args[i - 1] in _TAKES_A_PATH
        if is_nodeid(arg) and not an_option_s:
            ids.append(check(arg, roots=roots))
        elif not an_option_s and not arg.startswith("-") \
                and any((Path(arg) if Path(arg).is_absolute() else r / arg).is_dir()
                        for r in roots):
            # pytest would collect it beside the suite: the whole suite would run.
            raise UserError(f"{arg} after --: a directory does not narrow the run; give "
                            f"--suite {arg}, or node ids (FILE.py::TEST)")
        else:
            rest.append(arg)
    return ids, rest


def matches(node: NodeId, *, path: Path, name: str, cell: str) -> bool:
    """Whether the test ``path::name`` of ``cell`` is one ``node`` selects."""
    if path != node.path:
        return False
    if not node.name:
        return True
    name = split_repeat(name)[0]
    if node.name in (name, scenario_of(name, cell), name.split("[", 1)[0]):
        return True
    return name.startswith(node.name + "::")  # FILE.py::Class: every test in the class


class Chooser:
    """Keeps the tests the node ids select, first in collection (before -k and -m); a
    node id that selects nothing stops the run as the user's mistake."""

    def __init__(self, config: pytest.Config, nodes: list[NodeId], *, run_dir: Path) -> None:
        self.config = config
        self.nodes = nodes
        self.run_dir = run_dir

    def _shown(self, node: NodeId) -> str:
        """The node id as records name it (relative to the rootdir when inside it)."""
        path = node.path
        if path.is_relative_to(self.config.rootpath):
            path = path.relative_to(self.config.rootpath)
        return f"{path}::{node.name}" if node.name else str(path)

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        keep: list[pytest.Item] = []
        used: set[NodeId] = set()
        for item in items:
            cell = item_cell(item)
            path, name = item.path.resolve(), item.nodeid.partition("::")[2]
            chosen = [n for n in self.nodes if matches(n, path=path, name=name,
                                                       cell=cell.label if cell else "")]
            used.update(chosen)
            if chosen:
                keep.append(item)
        unused = [n for n in self.nodes if n not in used]
        if unused:
            write_stop(self.run_dir, exit_code=EXIT_USER_ERROR,
                               reason=f"node id {self._shown(unused[0])!r} matches no test of "
                                      "this run (its cells and parameters)")
            keep = []
        dropped = [i for i in items if i not in keep]
        if dropped:
            self.config.hook.pytest_deselected(items=dropped)
        items[:] = keep
