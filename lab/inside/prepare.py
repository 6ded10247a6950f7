"""What `lab shell` and `lab exec` check before anything is fetched or booted, and the run
directory they keep: one place, so the two refuse the same mistakes with the same words."""

from __future__ import annotations

from pathlib import Path

from lab.errors import UserError
from lab.host.doctor import missing
from lab.paths import cache_root, default_results_root
from lab.results.record import new_run_dir
from lab.run.cells import Cell
from lab.run.config import RunConfig
from lab.vm import slots
from lab.vm.ssh import port_is_free
from lab.vm.vmconfig import console_cap


def check(opts: RunConfig, cells: list[Cell]) -> tuple[Path, Path]:
    """The cells' kernels (named rightly, no download), the port, the environment's knobs
    and the host's prerequisites: (cache, results), or a UserError."""
    from lab.kernel.resolve import check as check_kernel

    slots.configured()
    console_cap()
    cache = cache_root(opts.cache)
    for cell in cells:
        check_kernel(cell.spec, cache=cache, variant=cell.variant)
    if opts.ssh_port is not None and not port_is_free(opts.ssh_port):
        raise UserError(f"port {opts.ssh_port} on 127.0.0.1 is busy; choose another "
                        "--ssh-port or omit it to pick a free one")
    results = (opts.results or default_results_root()).expanduser().resolve()
    problems = missing(cache, results=results)
    if problems:
        first = problems[0]
        raise UserError(f"{first.name}: {first.detail}; fix: {first.fix}")
    return cache, results


def run_dir(results: Path, label: str) -> Path:
    """A new run directory under ``results``, or a UserError saying why there is none."""
    try:
        return new_run_dir(results, label)
    except OSError as exc:
        raise UserError(f"--results {results}: cannot make a run directory there "
                        f"({exc.strerror}); give a directory you may write to") from None
