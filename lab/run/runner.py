"""`lab run`: validate, fetch, then hand the scenarios to pytest with the lab plugin.

Everything cheap to check is checked before anything expensive starts: the
kernel specs, the host tools, the SSH port.  Kernels are fetched here, before
pytest, so a fetch failure is reported as such and not as N broken tests.
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from lab.errors import (
    EXIT_INFRA_ERROR,
    EXIT_INTERRUPTED,
    EXIT_NOTHING_TESTED,
    EXIT_TEST_FAILED,
    EXIT_USER_ERROR,
    UserError,
)
from lab.host.doctor import missing
from lab.paths import REPO, SCENARIOS_DIR, cache_root, default_results_root, rootdir_args
from lab.results import junit, known, matrixfile
from lab.results import report as report_mod
from lab.results import summary as summary_mod
from lab.results.cell import short_label
from lab.results.record import append_phase, new_run_dir, read_records, read_stop
from lab.results.verdict import exit_code, exit_line
from lab.run import config, preflight, select
from lab.run.cells import matrix
from lab.run.config import RunConfig
from lab.run.shard import Shard
from lab.vm import slots
from lab.vm.ssh import port_is_free
from lab.vm.vmconfig import console_cap

log = logging.getLogger("lab.run")

SCENARIOS = SCENARIOS_DIR


def _check_host(cache: Path, results: Path) -> None:
    problems = missing(cache, results=results)
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more: run `lab doctor`)" if len(problems) > 1 else ""
        raise UserError(f"{first.name}: {first.detail}; fix: {first.fix}{more}")


def run(opts: RunConfig, *, argv: list[str]) -> int:
    """Run the scenario suites; returns the lab's exit status (lab.errors.RUN_EXIT_CODES)."""
    from lab.kernel.resolve import check as check_kernel
    from lab.kernel.resolve import resolve_kernel

    started = time.monotonic()
    kernels = list(opts.kernel_specs)
    slots.configured()  # a bad KERNEL_LAB_CPU_SLOTS, before anything starts
    console_cap()  # a bad KERNEL_LAB_CONSOLE_CAP too
    cache = cache_root(opts.cache)
    cells = matrix(kernels, opts.variants, opts.kconfig_add)
    for cell in cells:
        # Everything that needs no download or build, before the run directory exists.
        check_kernel(cell.spec, cache=cache, variant=cell.variant)
    shard = opts.shard
    known_path = known.path_for(opts.known_issues)
    issues = known.load(known_path)
    if opts.ssh_port is not None and not port_is_free(opts.ssh_port):
        raise UserError(f"port {opts.ssh_port} on 127.0.0.1 is busy; choose another "
                        "--ssh-port or omit it to pick a free one")
    if not opts.suite.exists():
        raise UserError(f"no scenarios at {opts.suite}; give --suite DIR or run from a "
                        "checkout of kernel-lab")
    if not opts.suite.is_dir() and opts.suite.suffix != ".py":
        raise UserError(f"--suite {opts.suite} is neither a directory nor a .py file; give "
                        "the directory (or the file) of the pytest tests to run")
    suite = opts.suite
    # A node id is relative to where it was typed, or to the checkout records name it from.
    roots = list(dict.fromkeys([Path.cwd(), suite if suite.is_dir() else suite.parent, REPO]))
    nodes, pytest_args = select.split([*opts.select, *opts.pytest_args], roots=roots)
    results_root = (opts.results or default_results_root()).expanduser().resolve()
    _check_host(cache, results_root)
    if preflight.needed(opts.keyword, pytest_args, suite=suite):
        preflight.check(lambda where: pytest_args_for(opts, nodes, pytest_args, run_dir=where,
                                                      cache=cache, shard=None,
                                                      known_path=known_path, workers=False),
                        keyword=opts.keyword, extra=pytest_args, suite=suite)

    label = "+".join(short_label(k) for k in dict.fromkeys(kernels))
    if shard is not None:
        label += f"-shard{shard.index}of{shard.total}"
    try:
        run_dir = new_run_dir(results_root, label)
    except OSError as exc:  # what the check could not foresee (a full disk, a race)
        raise UserError(f"--results {results_root}: cannot make a run directory there "
                        f"({exc.strerror}); give a directory you may write to") from None
    (run_dir / "command.txt").write_text(
        f"cd {shlex.quote(str(Path.cwd()))} && {shlex.join(argv)}\n")
    print(f"kernel-lab: run directory {run_dir}", flush=True)
    labels = [c.label for c in cells]
    try:
        # A shard split by cell fetches (and boots) its own cells' kernels only.
        for cell in (c for c in cells if shard is None or shard.takes_cell(c.label, cells=labels)):
            t = time.monotonic()
            k = resolve_kernel(cell.spec, cache=cache, variant=cell.variant)
            detail = {"kernel": cell.spec,
                      **({"variant": cell.variant} if cell.variant else {})}
            append_phase(run_dir, "fetch", time.monotonic() - t, **detail)
            print(f"kernel-lab: {cell.label} -> {k.release} ({time.monotonic() - t:.1f}s)"
                  + (f"; {k.note}" if k.note else ""), flush=True)
    except (UserError, KeyboardInterrupt):
        # Nothing ran: leave no run directory that looks like a run.
        shutil.rmtree(run_dir, ignore_errors=True)
        raise

    args = pytest_args_for(opts, nodes, pytest_args, run_dir=run_dir, cache=cache,
                           shard=shard, known_path=known_path)
    rc = int(pytest.main(args))
    records = read_records(run_dir)
    if rc == pytest.ExitCode.NO_TESTS_COLLECTED and shard is not None:
        m = matrixfile.read(run_dir)
        if m is not None and m.expected and not m.assigned:
            # A small matrix cut in many shards: the others run its tests, this one none.
            print(f"kernel-lab: shard {shard} has none of the matrix's {len(m.expected)} "
                  "tests (the other shards run them): nothing was tested", flush=True)
            return EXIT_NOTHING_TESTED
    stop = read_stop(run_dir)
    mistake = stop is not None and stop["exit_code"] == EXIT_USER_ERROR
    if not records and (mistake or (stop is None and rc == pytest.ExitCode.NO_TESTS_COLLECTED)):
        # The user's mistake, found at collection: one line, and no run directory.
        shutil.rmtree(run_dir, ignore_errors=True)
        if mistake:
            assert stop is not None
            raise UserError(str(stop["reason"]))
        raise UserError(f"no scenario matches -k {opts.keyword!r}" if opts.keyword
                        else f"no scenarios collected from {opts.suite}")
    if records:
        junit.rewrite(run_dir, records, cell_order=[c.label for c in cells])
        summary_mod.summarize(run_dir, wall=time.monotonic() - started, issues=issues)
        path = report_mod.write(run_dir, issues=issues)
        print(f"kernel-lab: report {path}", flush=True)
    status = exit_status(rc, [r.verdict for r in records], stop=read_stop(run_dir))
    if status == EXIT_INFRA_ERROR and not records:
        log.error("pytest exited with %d after no records; see %s", rc, run_dir)
    print(f"kernel-lab: {exit_line(status, [r.verdict for r in records])}", flush=True)
    return status


def pytest_args_for(opts: RunConfig, nodes: list[select.NodeId], pytest_args: list[str], *,
                    run_dir: Path, cache: Path, shard: Shard | None, known_path: Path,
                    workers: bool = True) -> list[str]:
    """pytest's arguments for the run into ``run_dir`` (lab.run.preflight collects with
    them first, without workers): the plugin's options from the run's configuration
    (lab.run.config), then pytest's own."""
    handed = dataclasses.replace(
        opts, run_dir=run_dir, cache=cache, shard=shard, known_issues=known_path,
        select=tuple(n.text() for n in nodes),
        # matrix.json keeps them, for `lab rerun` and the reproducers (-k and -m it keeps
        # as pytest understood them).
        pytest_args=tuple(recorded_args(pytest_args)))
    # Paths go as --opt=PATH: pytest takes a bare PATH token for an argument when it picks
    # its rootdir, and the run directory and the cache would move it to / for a suite
    # outside the checkout (test ids "tmp/suite/...", reproducers from /).
    args = [*_collect(opts, nodes), *config.pytest_options(handed),
            f"--junitxml={run_dir / 'junit.xml'}", "-p", "no:cacheprovider", "-rs",
            # lab is imported before pytest starts, so its entry point cannot be rewritten.
            "-W", "ignore::pytest.PytestAssertRewriteWarning"]
    if opts.keyword:
        args += ["-k", opts.keyword]
    if workers and opts.workers > 1:
        # The lab's scheduler replaces loadscope's scopes with cells (lab.run.schedule).
        args += ["-n", str(opts.workers), "--dist", "loadscope"]
    args += pytest_args
    return args


def _collect(opts: RunConfig, nodes: list[select.NodeId]) -> list[str]:
    """What pytest collects (the suite, or the node ids' files) and its ``--rootdir``.

    The lab's own scenarios are rooted above scenarios/, a suite of the user's at itself
    unless it has a pytest configuration of its own (lab.paths.rootdir_args), whatever
    the current directory; `lab rerun` of a suite of the user's gives the run's rootdir.
    Never the lab's for a test outside it, which pytest would name ``::test_a``.
    """
    paths = list(dict.fromkeys(n.path for n in nodes)) or [opts.suite]
    if opts.rootdir is not None:
        return [*map(str, paths), f"--rootdir={opts.rootdir}"]
    return [*map(str, paths), *rootdir_args(*paths, suite=opts.suite)]


# pytest's options that select by keyword or mark: matrix.json keeps them on their own.
_SELECTING = ("-k", "-m")


def recorded_args(args: list[str]) -> list[str]:
    """pytest's extra arguments as matrix.json keeps them: all but ``-k`` and ``-m``."""
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in _SELECTING:
            skip = True
        elif not arg.startswith(_SELECTING):
            out.append(arg)
    return out


def exit_status(pytest_rc: int, verdicts: list[str], *, stop: dict[str, Any] | None) -> int:
    """The lab's exit status for a finished pytest session: the one place pytest's exit
    codes are read, so that none of them stands in for the lab's (lab.errors).
    """
    failed = exit_code(verdicts) == EXIT_TEST_FAILED
    if stop is not None:  # the lab stopped the run itself and said why (Ctrl-C: 130)
        code = int(stop["exit_code"])
        # A failure seen before the machinery gave up is still the run's story (1); a
        # user's mistake or Ctrl-C is the command's, and says so.
        return EXIT_TEST_FAILED if failed and code == EXIT_INFRA_ERROR else code
    # An interrupted run is never "all passed".
    if pytest_rc == pytest.ExitCode.INTERRUPTED:
        return EXIT_INTERRUPTED
    if pytest_rc == pytest.ExitCode.USAGE_ERROR:
        return EXIT_USER_ERROR
    if failed:
        return EXIT_TEST_FAILED
    if pytest_rc == pytest.ExitCode.INTERNAL_ERROR or not verdicts:
        return EXIT_INFRA_ERROR
    return exit_code(verdicts)
