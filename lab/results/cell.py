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
    image = spec.partition(",modules=")[0]
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
