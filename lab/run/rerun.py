"""`lab rerun RUN_DIR [--failed] [--repeat N]`: a run again, from its records and matrix.json.

The same kernels pinned to what ran (lab.results.reproduce: ``debian:7.2.13-1``
for ``debian:7.2``), the same variants, the same guest options with the
accelerator that ran, and the same selection: the suite, ``-k``, ``-m`` and node
ids, or with ``--failed`` the tests that have no passing verdict to show:

- rerun: FAIL, CRASH, HANG, INFRA, and the ones that never got a verdict (NOTRUN:
  a run stopped or interrupted; MISS: a merged run's test no shard reported);
- not rerun: PASS, SKIP, XFAIL (a known issue expects that failure: `lab rerun`
  without ``--failed`` runs it again) and INCONCLUSIVE (nothing failed; a race
  that could not show it raced is worth ``--repeat`` on the whole run).

A kernel's label changes when it is pinned (a cell ``debian:7.2`` becomes
``debian:7.2.13-1``), so tests are chosen by node id with the new label, and a
shard's tests (assigned by a hash of the old label) by their ids as well.

The ids are found where the run's were: the lab's own scenarios/ in the lab that
reruns them (a run directory copied from CI or another checkout reruns here), a
suite of the user's under the run's rootdir, which pytest is given again so that
the rerun's ids are the run's.  The run's known issues and pytest's extra arguments
(``--deselect``, ``-p no:X``...) come along.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lab.errors import UserError
from lab.paths import KNOWN_ISSUES, SCENARIOS_DIR
from lab.results import matrixfile, reproduce
from lab.results.cell import cell_label, with_cell
from lab.results.record import read_records
from lab.results.verdict import FAILED, Verdict
from lab.run.config import RunConfig

# The verdicts `--failed` runs again (see above).
RERUN = frozenset(v.value for v in FAILED) | {Verdict.INFRA.value, Verdict.NOTRUN.value,
                                               Verdict.MISS.value}


def options(run_dir: Path, *, failed: bool = False,
            given: Mapping[str, Any] | None = None) -> RunConfig:
    """The RunConfig that runs ``run_dir`` again, with the options `lab rerun` was
    ``given`` (lab.run.config: --repeat, by default as often as the run did, --results,
    --cache, --workers); a UserError when it is not a run directory, or when ``--failed``
    finds nothing to run."""
    m = matrixfile.read(run_dir)
    if not run_dir.is_dir() or m is None:
        raise UserError(f"{run_dir} is not a lab run directory (no matrix.json); give a "
                        "directory that `lab run` wrote")
    records = read_records(run_dir)
    cmd = reproduce.run_command(run_dir)
    assert cmd is not None
    relabel = {}  # old cell label -> the pinned kernel's
    for cell, pinned in zip(m.cells, reproduce.pinned_cells(m, records), strict=True):
        relabel[str(cell["label"])] = cell_label(pinned, cell.get("variant"))
    own = reproduce.lab_suite(m)
    root = reproduce.base_dir(m)

    def node(cell: str, test: str) -> str:
        return str(root / with_cell(test, cell, relabel.get(cell, cell)))

    select: list[str] = []
    keyword, markexpr = cmd.keyword or None, (["-m", cmd.markexpr] if cmd.markexpr else [])
    if failed:
        chosen = [(r.cell, r.test) for r in records if r.verdict in RERUN]
        if not chosen:
            seen = ", ".join(sorted({r.verdict for r in records})) or "no records"
            raise UserError(f"--failed: no test of {run_dir} failed or went unrun ({seen}); "
                            "leave --failed out to run it all again")
        select = list(dict.fromkeys(node(c, t) for c, t in chosen))
        keyword, markexpr = None, []
    elif m.shard:
        select = list(dict.fromkeys(node(c, t) for c, t in m.assigned))
        keyword, markexpr = None, []
    else:
        select = [str(root / s) for s in m.select]
    # The suite: the lab's own when it was (its node ids say the rest); a suite of the
    # user's as the run had it, which roots the rerun's ids as the run's were.
    suite = root / m.suite[0].split("::")[0] if len(m.suite) == 1 else None
    if own and (select or suite == SCENARIOS_DIR):
        suite = None
    recorded = m.options.get("known_issues")
    if recorded and not Path(recorded).is_file():
        raise UserError(f"{run_dir} ran with the known issues {recorded}, which are gone; put "
                        "the file back there (a rerun expects what its run expected)")
    return RunConfig(**{
        "kernels": cmd.kernels, "variants": cmd.variants, "guest": cmd.guest,
        "keyword": keyword, "pytest_args": [*markexpr, *cmd.pytest_args, *select],
        "repeat": max(cmd.repeat, 1),
        # "" the lab's own list: this lab's, not a ./known-issues.toml of where it reruns.
        "known_issues": None if recorded is None else Path(recorded) if recorded
        else KNOWN_ISSUES,
        "rootdir": None if own else root, "suite": suite or SCENARIOS_DIR,
        **(given or {})})
