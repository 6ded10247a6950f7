"""The commands that run a test, a run or a bisection's culprit again: one builder for all.

A reproducer names what ran, not what was asked for: the kernel pinned
(``debian:7.2.13-1``, not ``debian:7.2``, which is another package next month;
``git:PATH@<full sha>``, not a branch; an image with its SHA-256, refused if it
changed: ``Kernel.pinned_spec``), the accelerator that ran, the guest's vCPUs,
memory and kernel parameters, and the test by its node id.  Every reproducer
the lab writes comes from ``command``: the run's ``command.txt`` (``run_command``),
each failure's in the report and the summary (``for_record``) and the
bisection's (lab.bisect).  `lab rerun` reads the same data (matrix.json and the
records) rather than the text.

What a run's matrix.json says beside the tests goes into each of its commands: the
suite (kept with node ids: a suite outside the lab roots its ids as its run did), the
known-issues list of the user's, and pytest's extra arguments (``--deselect``,
``-p no:X``...).  A run of the lab's own scenarios/ names its tests against the lab
that reads it (``base_dir``), so a run directory copied from CI or another checkout
reruns here: no ``cd`` into the old checkout.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from lab import atomic
from lab.options import GuestOptions
from lab.paths import REPO, SCENARIOS_DIR
from lab.results import matrixfile
from lab.results.cell import PREBUILT, scenario_of, split_repeat
from lab.results.record import Record, read_records

COMMAND = "command.txt"
AS_GIVEN = "# as given: "
# A reproducer always names these (the rest of the guest's options when not the default).
NAMED = ("accel", "cpus", "memory")


@dataclass(frozen=True)
class Command:
    """A `lab run` as data: the pinned kernels and variants, the guest, the selection."""

    kernels: list[str]  # pinned specs, in the run's order
    variants: list[str] = field(default_factory=list)  # for built kernels
    guest: GuestOptions = field(default_factory=GuestOptions)
    select: list[str] = field(default_factory=list)  # node ids, relative to ``cwd``
    suite: str = ""  # "" the lab's scenarios/
    keyword: str = ""
    markexpr: str = ""
    shard: str | None = None
    repeat: int = 0
    cwd: str = ""  # where to run it from (the node ids and the suite are relative to it)
    known_issues: str = ""  # a list of the user's ("" the default)
    pytest_args: list[str] = field(default_factory=list)  # after --, before the node ids

    def argv(self) -> list[str]:
        argv = ["lab", "run"]
        for spec in self.kernels:
            argv += ["--kernel", spec]
        for variant in self.variants:
            argv += ["--variant", variant]
        argv += self.guest.lab_args(always=NAMED)
        if self.suite:
            argv += ["--suite", self.suite]
        if self.known_issues:
            argv += ["--known-issues", self.known_issues]
        if self.keyword:
            argv += ["-k", self.keyword]
        if self.shard:
            argv += ["--shard", self.shard]
        if self.repeat > 1:
            argv += ["--repeat", str(self.repeat)]
        tail = (["-m", self.markexpr] if self.markexpr else []) + self.pytest_args + self.select
        return argv + (["--", *tail] if tail else [])

    def text(self) -> str:
        cmd = shlex.join(self.argv())
        return f"cd {shlex.quote(self.cwd)} && {cmd}" if self.cwd else cmd


def pinned(kernel: dict[str, object], fallback: str) -> str:
    """A record's kernel as a spec that names exactly it (its identity's ``pinned``)."""
    return str(kernel.get("pinned") or kernel.get("spec") or fallback)


def variant_of(kernel: dict[str, object]) -> str | None:
    v = kernel.get("variant")
    return None if v in (None, "", PREBUILT) else str(v)


def guest_of(m: matrixfile.Matrix | None) -> GuestOptions:
    """The guest options a run was given (matrix.json), the defaults for an older run."""
    data = m.options.get("guest") if m is not None else None
    return GuestOptions.from_dict(data) if isinstance(data, dict) else GuestOptions()


def ran_on(guest: GuestOptions, records: Sequence[Record]) -> GuestOptions:
    """``guest`` with the accelerator that ran (the first record's that had a guest)."""
    accel = next((str(r.accel["name"]) for r in records if r.accel.get("name")), None)
    return replace(guest, accel=accel) if accel else guest


def nodeid(test: str, cell: str) -> str:
    """The node id that selects ``test`` again whatever its kernel's label becomes: the
    test id without the cell's parameter (and without a repetition's)."""
    return scenario_of(split_repeat(test)[0], cell)


def lab_suite(m: matrixfile.Matrix | None) -> bool:
    """Whether the run's tests were the lab's own scenarios/ (its ids are relative to the
    directory that holds scenarios/, whichever lab that is)."""
    if m is None:
        return False
    flag = m.options.get("lab_suite")
    if flag is not None:
        return bool(flag)
    # A run from before the flag: its rootdir was this lab's, or, copied from another
    # checkout that is not here, it named nothing but the lab's own scenarios.
    if not m.rootdir:
        return False
    root = Path(m.rootdir)
    if root.resolve() == REPO.resolve():
        return True
    files = {s.split("::")[0] for s in [*m.suite, *m.select, *(t for _, t in m.expected)]}
    return (not root.exists() and bool(files)
            and all(f.split("/")[0] == SCENARIOS_DIR.name and (REPO / f).exists()
                    for f in files))


def base_dir(m: matrixfile.Matrix) -> Path:
    """The directory the run's test ids and suite are relative to: this lab's top for the
    lab's own scenarios (wherever the run was made), else the run's rootdir."""
    if lab_suite(m):
        return REPO
    return Path(m.rootdir) if m.rootdir else Path.cwd()


def where(m: matrixfile.Matrix | None) -> str:
    """The directory a reproducer must run from: none for the lab's own scenarios, whose
    node ids `lab run` finds from any directory (lab.run.select looks beside the lab
    too; in a wheel, ``cd`` there would put ./results into site-packages), else the
    rootdir the node ids are relative to."""
    if m is None or lab_suite(m):
        return ""
    return m.rootdir


def _suite(m: matrixfile.Matrix, *, selecting: bool) -> str:
    """The run's suite as `lab run --suite` takes it ("" for the lab's own scenarios/, and
    for a part of them when node ids choose the tests anyway; an absolute path to a part
    of them otherwise, since the command runs from any directory)."""
    if len(m.suite) != 1:
        return ""
    path = Path(m.suite[0].split("::")[0])
    if not lab_suite(m):
        return str(path)  # relative to the rootdir, where the command runs
    full = path if path.is_absolute() else REPO / path
    return "" if selecting or full == SCENARIOS_DIR else str(full)


def _known_issues(m: matrixfile.Matrix) -> str:
    return str(m.options.get("known_issues") or "")


def template(m: matrixfile.Matrix | None) -> Command:
    """What every command that runs tests of ``m`` again carries beside its kernels and
    node ids: where to run it, the suite, the known issues and pytest's extra arguments."""
    if m is None:
        return Command(kernels=[])
    return Command(kernels=[], guest=guest_of(m), suite=_suite(m, selecting=True),
                   cwd=where(m), known_issues=_known_issues(m),
                   pytest_args=[str(a) for a in m.options.get("pytest_args") or []])


def for_record(record: Record, *, guest: GuestOptions | None = None,
               run: Command | None = None) -> str:
    """The command that runs this one test on this one kernel again (``run``: what its
    run's commands carry, ``template``; ``guest``: the run's guest options)."""
    kernel = record.kernel
    variant = variant_of(kernel)
    base = run or Command(kernels=[])
    return replace(base, kernels=[pinned(kernel, record.cell)],
                   variants=[variant] if variant else [],
                   guest=ran_on(guest or base.guest, [record]),
                   select=[nodeid(record.test, record.cell)]).text()


def maker(records: Sequence[Record], *,
          matrix: matrixfile.Matrix | None) -> Callable[[Record], str]:
    """``for_record`` for the records of one run: a test that never ran (NOTRUN, MISS)
    has no kernel identity nor accelerator of its own, and takes its cell's."""
    ran: dict[str, Record] = {}
    for r in records:
        if r.kernel.get("pinned") and r.accel:
            ran.setdefault(r.cell, r)
    run = template(matrix)

    def make(record: Record) -> str:
        model = ran.get(record.cell)
        if model is not None and not record.kernel.get("pinned"):
            record = replace(record, kernel=model.kernel, accel=model.accel)
        return for_record(record, run=run)
    return make


def pinned_cells(m: matrixfile.Matrix, records: Sequence[Record]) -> list[str]:
    """Each cell's kernel, pinned as its records say it ran (its spec when none ran)."""
    out = []
    for cell in m.cells:
        label, spec = str(cell["label"]), str(cell["spec"])
        recs = [r for r in records if r.cell == label and r.kernel.get("pinned")]
        out.append(pinned(recs[0].kernel, spec) if recs else spec)
    return out


def run_command(run_dir: Path) -> Command | None:
    """The whole run as one pinned command, from matrix.json and the records; None for a
    directory without a matrix."""
    m = matrixfile.read(run_dir)
    if m is None:
        return None
    records = read_records(run_dir)
    kernels = pinned_cells(m, records)
    variants = [str(c["variant"]) for c in m.cells if c.get("variant")]
    return replace(template(m), kernels=list(dict.fromkeys(kernels)),
                   variants=list(dict.fromkeys(variants)), guest=ran_on(guest_of(m), records),
                   select=list(m.select), suite=_suite(m, selecting=bool(m.select)),
                   keyword=m.keyword, markexpr=m.markexpr, shard=m.shard,
                   repeat=int(m.options.get("repeat") or 0))


def write_command(run_dir: Path) -> None:
    """Rewrite ``command.txt`` as the pinned command, keeping the command as given
    (its first line when the run began) on a comment line below it."""
    path = run_dir / COMMAND
    old = path.read_text().splitlines() if path.is_file() else []
    given = next((ln.removeprefix(AS_GIVEN) for ln in old if ln.startswith(AS_GIVEN)),
                 old[0] if old else "")
    cmd = run_command(run_dir)
    if cmd is None:
        return
    atomic.write_text(path, cmd.text() + "\n" + (f"{AS_GIVEN}{given}\n" if given else ""))
