"""What the plugin's parts share through pytest's stash: the run's configuration (read
once from the ``--lab-*`` options: ``config_of``), the run directory, the kernels,
and per test the window mark, the diagnosis, what the kernel log showed and the
evidence gathered so far."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from lab.errors import UserError
from lab.kernel.artifact import Kernel
from lab.options import OptionError
from lab.results.evidence import Evidence
from lab.results.verdict import Diagnosis
from lab.run import config as run_config
from lab.run.cells import Cell
from lab.run.config import RunConfig
from lab.run.watch import Assessment, Mark
from lab.vm.session import Machine

CONFIG_KEY = pytest.StashKey[RunConfig]()
RUN_DIR_KEY = pytest.StashKey[Path]()
KERNELS_KEY = pytest.StashKey[dict[str, Kernel]]()  # by cell label
MACHINES_KEY = pytest.StashKey[dict[str, Machine]]()  # this worker's guests, by cell label
STARTED_KEY = pytest.StashKey[float]()
MARK_KEY = pytest.StashKey[Mark]()
DIAGNOSIS_KEY = pytest.StashKey[Diagnosis]()
ASSESSMENT_KEY = pytest.StashKey[Assessment]()
DATA_KEY = pytest.StashKey[dict[str, Any]]()  # the lab's own measurements of a test
EVIDENCE_KEY = pytest.StashKey[Evidence]()  # what a test left so far (lab.run.records)
# What the kernel log showed after a test's window closed (lab.run.guard), for the test
# named in each entry: carried by this worker's next report to the Recorder.
AFTERMATH_KEY = pytest.StashKey[list[dict[str, Any]]]()


def config_of(config: pytest.Config) -> RunConfig:
    """The run's configuration from the ``--lab-*`` options (and pytest's -k), checked
    once: a mistake is a usage error naming the option."""
    if CONFIG_KEY not in config.stash:
        try:
            config.stash[CONFIG_KEY] = run_config.from_pytest(
                config.getoption, keyword=config.getoption("keyword", None))
        except OptionError as exc:
            raise pytest.UsageError(exc.for_front("pytest")) from None
        except UserError as exc:
            raise pytest.UsageError(str(exc)) from None
    return config.stash[CONFIG_KEY]


def item_cell(item: pytest.Item) -> Cell | None:
    """The cell (kernel x variant) a test is parametrized with, if it takes ``kernel``."""
    callspec = getattr(item, "callspec", None)
    if callspec is None or "kernel" not in callspec.params:
        return None
    cell = callspec.params["kernel"]
    return cell if isinstance(cell, Cell) else Cell(str(cell))


def kernel_spec(item: pytest.Item) -> str | None:
    """The kernel spec a test is parametrized with, if it takes the ``kernel`` fixture."""
    cell = item_cell(item)
    return None if cell is None else cell.spec


def item_kernel(item: pytest.Item) -> Kernel | None:
    """The kernel a test ran on, or would have: a config SKIP happens before its fixtures."""
    cell = item_cell(item)
    return None if cell is None else item.config.stash.get(KERNELS_KEY, {}).get(cell.label)


def lab_data(item: pytest.Item) -> dict[str, Any]:
    """The item's record data the lab adds (merged into the record's ``data``)."""
    return item.stash.setdefault(DATA_KEY, {})


def evidence_so_far(item: pytest.Item) -> Evidence:
    """What the test has left so far (phases, notes, measurements; lab.results.evidence)."""
    return item.stash.get(EVIDENCE_KEY, Evidence())


def add_evidence(item: pytest.Item, **changes: Any) -> Evidence:
    """The test's evidence with ``changes`` (fields of Evidence), kept and returned."""
    item.stash[EVIDENCE_KEY] = dataclasses.replace(evidence_so_far(item), **changes)
    return item.stash[EVIDENCE_KEY]


def required_config(item: pytest.Item) -> list[str]:
    """The config options a test requires: every ``requires_config`` marker on it, its
    class and its module (and each parametrization's), together, in order, once each.
    The closest marker alone is not enough: a module's IO_URING and a function's
    BLK_DEV_UBLK are both needed."""
    found: list[str] = []
    for marker in item.iter_markers("requires_config"):
        found += [str(a) for a in marker.args if str(a) not in found]
    return found
