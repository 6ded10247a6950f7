"""The bisection's ports: what builds a point into a kernel, and what runs the tests on it.

The driver (lab.bisect.driver) sees only these two protocols, as syzkaller's
``pkg/bisect`` sees a builder and a tester; tests substitute fakes.

- ``KernelBuilder``: ``git:REPO@COMMIT`` built through lab.kernel (the lab's
  clone and one incremental object tree per repository and variant), or a
  Debian ``debian:VERSION`` fetched; the image's SHA-256 identifies what was
  built (two commits with the same image did the same thing).
- ``LabRun``: one ``lab run --kernel SPEC -k EXPR`` per run, started through
  lab.proc (its own process group, ended with the lab, the output in a log),
  each in a run directory of its own; its records are read back with
  lab.results.record.  ``launch`` is the process seam the tests replace.
- ``ExecRun``: the same with ``lab exec --kernel SPEC -- PROGRAM`` (`lab bisect
  --exec`): the user's reproducer is the one test, as syzkaller bisects.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from lab import proc
from lab.bisect.classify import Observed
from lab.errors import UserError
from lab.kernel.build import BuildError
from lab.options import GuestOptions
from lab.results import known
from lab.results.cell import scenario_of
from lab.results.record import load_records
from lab.results.reproduce import NAMED
from lab.run.config import RunConfig, lab_args

log = logging.getLogger("lab.bisect")

RUN_TIMEOUT = 3600.0


@dataclass(frozen=True)
class Built:
    """A point turned into a kernel (or why it could not be)."""

    ok: bool
    spec: str
    artifact: str = ""  # the image's SHA-256, 16 hex digits
    seconds: float = 0.0
    error: str = ""
    log: str = ""


@dataclass(frozen=True)
class Tested:
    """One run's results per test (ids without the kernel parameter), and its exit status."""

    results: dict[str, Observed]
    exit_code: int
    seconds: float
    run_dir: str
    accel: str = ""  # what its guests ran on, as its records say ("tcg", "kvm"; "" no guest)


class Builder(Protocol):
    def build(self, point: str) -> Built: ...


class Tester(Protocol):
    def test(self, spec: str, *, out: Path) -> Tested: ...


def image_hash(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:16]


class KernelBuilder:
    """Builds ``spec_of(point)`` through lab.kernel.resolve (a cache hit costs nothing)."""

    def __init__(self, spec_of: Callable[[str], str], *, cache: Path,
                 variant: str | None) -> None:
        self.spec_of = spec_of
        self.cache = cache
        self.variant = variant

    def build(self, point: str) -> Built:
        from lab.kernel.resolve import resolve_kernel

        spec = self.spec_of(point)
        t0 = time.monotonic()
        try:
            kernel = resolve_kernel(spec, cache=self.cache, variant=self.variant)
        except BuildError as exc:
            return Built(ok=False, spec=spec, seconds=time.monotonic() - t0,
                         error=str(exc).splitlines()[0] + " " + " ".join(
                             ln.strip() for ln in str(exc).splitlines()[1:3]),
                         log=str(exc.log or ""))
        except UserError as exc:  # this commit's Kconfig lacks an option the variant sets
            return Built(ok=False, spec=spec, seconds=time.monotonic() - t0, error=str(exc))
        return Built(ok=True, spec=spec, artifact=image_hash(kernel.image),
                     seconds=time.monotonic() - t0)


def spawn_and_wait(argv: Sequence[str], log_path: Path) -> int:
    """Run ``argv`` to its end as a spawned child: if the lab dies, its reaper ends the child
    (a killed bisection leaves no `lab run` behind)."""
    # In the bisection's own directory: the run's defaults (./known-issues.toml) and a
    # relative --suite mean there what they mean to the user.
    child = proc.spawn(argv, log_path=log_path)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while child.poll() is None:
            if time.monotonic() > deadline:
                log.error("bisect: %s ran over %.0f s; stopped", " ".join(argv), RUN_TIMEOUT)
                break
            time.sleep(0.5)
    finally:
        rc = child.stop()
    return rc if rc is not None else 3


class LabRun:
    """``lab run`` of the selected scenarios, one boot per run."""

    def __init__(self, run: RunConfig, *,
                 launch: Callable[[Sequence[str], Path], int] = spawn_and_wait) -> None:
        # ``run``: -k, the variant, the cache, the suite, the guest's options and the known
        # issues of every run; none unless asked (/dev/null): a known issue would turn the
        # very failure being bisected into XFAIL at some commits and not at others.
        self.run = run
        self.launch = launch

    @property
    def known_issues(self) -> Path:
        return self.run.known_issues or known.NONE

    def argv(self, spec: str, results: Path) -> list[str]:
        """The `lab run` of ``spec`` into ``results``, from the run options (lab.run.config)."""
        one = dataclasses.replace(self.run, kernels=(spec,), results=results,
                                  known_issues=self.known_issues)
        return [sys.executable, "-m", "lab.cli", "run", *lab_args(one, always=("accel",))]

    def test(self, spec: str, *, out: Path) -> Tested:
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        rc = self.launch(self.argv(spec, out), out / "lab-run.log")
        seconds = time.monotonic() - t0
        dirs = sorted(d for d in out.iterdir() if d.is_dir())
        results: dict[str, Observed] = {}
        accels: set[str] = set()
        for run_dir in dirs:
            # A run killed while writing its last record: that test did not run.
            for r in load_records(run_dir, torn_end_ok=True).records:
                if r.accel.get("name"):
                    accels.add(str(r.accel["name"]))
                # Without the cell parameter: the same test at any commit has the same id.
                results[scenario_of(r.test, r.cell)] = Observed(
                    verdict=r.verdict, reason=r.reason,
                    splats=tuple(str(s.get("title", "")) for s in r.splats),
                    fatal=any(bool(s.get("fatal")) for s in r.splats))
        # Two after a single-threaded retry ("tcg+tcg-single"): the same only as that.
        return Tested(results=results, exit_code=rc, seconds=seconds,
                      run_dir=str(dirs[-1]) if dirs else str(out), accel="+".join(sorted(accels)))


class ExecRun(LabRun):
    """``lab exec`` of the user's program (its path, then its arguments), one boot per run:
    its one record (``exec::NAME``) is the run's result, read back as ``LabRun`` reads."""

    def __init__(self, run: RunConfig, *, program: Sequence[str], timeout: float,
                 launch: Callable[[Sequence[str], Path], int] = spawn_and_wait) -> None:
        super().__init__(run, launch=launch)
        self.program = tuple(program)
        self.timeout = timeout

    def argv(self, spec: str, results: Path) -> list[str]:
        """The `lab exec` of ``spec`` into ``results``: the run options it takes (the
        variant, the added options, the cache, the guest's), then the program."""
        one = RunConfig(kernels=(spec,), variants=self.run.variants,
                        kconfig_add=self.run.kconfig_add, cache=self.run.cache,
                        results=results, guest=self.run.guest)
        return [sys.executable, "-m", "lab.cli", "exec", *lab_args(one, always=("accel",)),
                "--timeout", f"{self.timeout:g}", "--", *self.program]


def exec_reproducer(target: dict[str, object], *, kernel: str, variants: Sequence[str],
                    guest: GuestOptions) -> str:
    """The `lab exec` that reproduces a bisection's finding with its program (``target``:
    the journal's ``exec`` entry) on ``kernel``."""
    argv = ["lab", "exec", "--kernel", kernel]
    for variant in variants:
        argv += ["--variant", variant]
    argv += guest.lab_args(always=NAMED)
    args = target.get("args") or []
    assert isinstance(args, list)
    argv += ["--timeout", f"{target['timeout']:g}", "--", str(target["program"]),
             *(str(a) for a in args)]
    return shlex.join(argv)
