"""`lab run`: validate, fetch, then hand the scenarios to pytest with the lab plugin.

Everything cheap to check is checked before anything expensive starts: the
kernel specs, the host tools, the SSH port.  Kernels are fetched here, before
pytest, so a fetch failure is reported as such and not as N broken tests.
"""

from __future__ import annotations

import logging
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lab import results
from lab.doctor import missing
from lab.errors import EXIT_INFRA_ERROR, EXIT_USER_ERROR, UserError
from lab.paths import cache_root, default_results_root
from lab.pytest_plugin import short_label
from lab.ssh import port_is_free

log = logging.getLogger("lab.run")

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


@dataclass(frozen=True)
class RunOptions:
    kernels: list[str]
    keyword: str | None = None
    results: Path | None = None
    cache: Path | None = None
    accel: str = "auto"
    ssh_port: int | None = None
    workers: int = 1
    variant: str | None = None
    suite: Path = SCENARIOS
    pytest_args: list[str] = field(default_factory=list)


def _check_host(cache: Path) -> None:
    problems = missing(cache)
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more: run `lab doctor`)" if len(problems) > 1 else ""
        raise UserError(f"{first.name} is missing; install it with: {first.fix}{more}")


def run(opts: RunOptions, *, argv: list[str]) -> int:
    """Run the scenario suites; returns the lab's exit status (0, 1, 2 or 3)."""
    from lab.fetch import resolve_kernel
    from lab.kspec import parse_spec

    started = time.monotonic()
    kernels = opts.kernels or ["debian:7.2"]
    for spec in kernels:
        parse_spec(spec)  # raises UserError before anything is fetched
    if opts.ssh_port is not None and not port_is_free(opts.ssh_port):
        raise UserError(f"port {opts.ssh_port} on 127.0.0.1 is busy; choose another "
                        "--ssh-port or omit it to pick a free one")
    if opts.ssh_port is not None and opts.workers > 1:
        raise UserError("--ssh-port needs --workers 1 (each worker boots its own VM)")
    if not opts.suite.exists():
        raise UserError(f"no scenarios at {opts.suite}; give --suite DIR or run from a "
                        "checkout of kernel-lab")
    cache = cache_root(opts.cache)
    _check_host(cache)

    label = "+".join(short_label(k) for k in kernels)
    run_dir = results.new_run_dir(opts.results or default_results_root(), label)
    (run_dir / "command.txt").write_text(
        f"cd {shlex.quote(str(Path.cwd()))} && {shlex.join(argv)}\n")
    print(f"kernel-lab: run directory {run_dir}", flush=True)
    for spec in kernels:
        t = time.monotonic()
        k = resolve_kernel(spec, cache=cache, variant=opts.variant)
        results.append_phase(run_dir, "fetch", time.monotonic() - t, kernel=spec)
        print(f"kernel-lab: {spec} -> {k.release} ({time.monotonic() - t:.1f}s)", flush=True)

    args = [str(opts.suite), "--lab-run-dir", str(run_dir), "--lab-cache", str(cache),
            "--lab-accel", opts.accel, "--junitxml", str(run_dir / "junit.xml"),
            "-p", "no:cacheprovider", "-rs",
            # lab is imported before pytest starts, so its entry point cannot be rewritten.
            "-W", "ignore::pytest.PytestAssertRewriteWarning"]
    for spec in kernels:
        args += ["--lab-kernel", spec]
    if opts.variant:
        args += ["--lab-variant", opts.variant]
    if opts.keyword:
        args += ["-k", opts.keyword]
    if opts.ssh_port is not None:
        args += ["--lab-ssh-port", str(opts.ssh_port)]
    if opts.workers > 1:
        args += ["-n", str(opts.workers), "--dist", "loadgroup"]
    args += opts.pytest_args
    rc = int(pytest.main(args))
    records = results.read_records(run_dir)
    if rc == pytest.ExitCode.NO_TESTS_COLLECTED:
        raise UserError(f"no scenario matches -k {opts.keyword!r}" if opts.keyword
                        else f"no scenarios collected from {opts.suite}")
    if records:
        summary = results.summarize(run_dir, wall=time.monotonic() - started)
    # An interrupted run (Ctrl-C, or a user error found mid-run) is never "all passed",
    # and a run the lab had to stop (reboot limit) is the machinery's failure.
    if rc in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.INTERRUPTED):
        return EXIT_USER_ERROR
    if rc == pytest.ExitCode.INTERNAL_ERROR or not records:
        log.error("pytest exited with %d after %d records; see %s", rc, len(records), run_dir)
        return EXIT_INFRA_ERROR
    return int(summary["exit_code"])
