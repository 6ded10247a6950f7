"""A matrix cell's name, and a test's name without it: plain strings, shared by run and results.

A cell is one kernel spec with one config variant (built kernels) or none
(prebuilt ones).  Its label is the test-id parameter of every test in the cell
(``test_x[debian:7.2]``, ``test_y[io_setup-debian-src:7.2/debug]``), so a record's
test id alone is unique across a matrix, and two runs compare by (cell, scenario):
the scenario is the test id with the cell's label taken out of its parameters.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

PREBUILT = "prebuilt"  # Kernel.variant of a kernel the lab did not build


def short_label(spec: str) -> str:
    """A test-id / directory-name friendly label for a kernel spec."""
    if len(spec) <= 32:
        return spec
    image = spec.partition(",")[0]  # without ,modules= and ,sha256=
    return f"{Path(image).parent.name}-{Path(image).name}"[-32:]


def cell_label(spec: str, variant: str | None) -> str:
    """``debian:7.2`` for a prebuilt kernel, ``debian-src:7.2/debug`` for a built one."""
    base = short_label(spec)
    return base if variant in (None, "", PREBUILT) else f"{base}/{variant}"


def label_of(kernel: dict[str, Any]) -> str:
    """The cell label of a record's kernel identity (Kernel.identity())."""
    spec = str(kernel.get("spec") or "?")
    return cell_label(spec, kernel.get("variant"))


def scenario_of(test: str, cell: str) -> str:
    """The test id without the cell's parameter: what is compared across cells and runs."""
    head, sep, params = test.partition("[")
    if not sep or not cell or not params.endswith("]"):
        return test
    inner = params[:-1]
    if inner == cell:
        return head
    if inner.startswith(f"{cell}-"):
        return f"{head}[{inner[len(cell) + 1:]}]"
    if inner.endswith(f"-{cell}"):
        return f"{head}[{inner[:-len(cell) - 1]}]"
    if f"-{cell}-" in inner:
        return f"{head}[{inner.replace(f'-{cell}-', '-', 1)}]"
    return test


def with_cell(test: str, cell: str, new: str) -> str:
    """The test id ``test`` of cell ``cell`` as the same test of cell ``new`` (`lab rerun`
    names a pinned kernel: ``test_x[debian:7.2]`` becomes ``test_x[debian:7.2.13-1]``)."""
    head, sep, params = test.partition("[")
    if not sep or not params.endswith("]") or cell == new:
        return test
    parts = params[:-1]
    if parts == cell:
        return f"{head}[{new}]"
    if parts.startswith(f"{cell}-"):
        return f"{head}[{new}{parts[len(cell):]}]"
    if parts.endswith(f"-{cell}"):
        return f"{head}[{parts[:-len(cell)]}{new}]"
    return f"{head}[{parts.replace(f'-{cell}-', f'-{new}-', 1)}]"


# A repetition's parameter (`lab run --repeat N`): test_x[debian:7.2-repeat2].  Records
# keep the test's own id and the repetition apart (Record.repeat), so that the report
# and comparisons see one test with N results.
REPEAT_PREFIX = "repeat"
_REPEAT = re.compile(rf"(?<=[\[-]){REPEAT_PREFIX}(\d+)(?=[-\]])")


def repeat_id(n: int) -> str:
    return f"{REPEAT_PREFIX}{n}"


def split_repeat(test: str) -> tuple[str, int]:
    """(the test id without its repetition's parameter, the repetition: 0 when none)."""
    head, sep, params = test.partition("[")
    m = _REPEAT.search(f"[{params}") if sep else None
    if m is None:
        return test, 0
    start, end = m.start() - 1, m.end() - 1  # within params
    inner = params[:-1]
    # "-repeatN" after another parameter; else "repeatN-" first, or alone.
    rest = inner[:start - 1] + inner[end:] if start > 0 else inner[end + 1:]
    return (f"{head}[{rest}]" if rest else head), int(m.group(1))


# pytest's -k grammar: an identifier is made of these; anything else ends it.
_K_IDENT = re.compile(r"(?:\w|[:+\-.\[\]\\/])+")


def keyword_for(name: str) -> str:
    """A ``-k`` expression that selects the test called ``name`` (its part after ``::``).

    -k matches identifiers as substrings of the test's name; characters outside
    its grammar ("@" in git:PATH@REV, a space) split the name into pieces that
    must all match.
    """
    pieces = _K_IDENT.findall(name)
    return " and ".join(pieces) if pieces else name
