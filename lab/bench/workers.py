"""The matrix figure: the four Debian kernels with --workers 2 against --workers 1.

Both are whole `lab run`s of the default suites on a warm cache, one after the
other; the machine's load average is noted before each, since other work on a
shared machine moves the ratio more than anything the lab does.  Goal: <= 0.65.
How many of the host's cores each run kept busy on average (from /proc/stat) says
how far two workers are from the ideal: W2 = max(W1 / 2, W1 x busy(W1) / cores), if
the work did not grow when two guests share the cores.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from lab import proc

KERNELS = ("debian:6.1", "debian:6.12", "debian:7.2", "debian:7.3")


def cpu_jiffies(stat: str | None = None) -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs so far, from /proc/stat's first line (or
    ``stat``'s): user nice system idle iowait irq softirq steal.  The guest times that
    follow are already in user and nice; steal counts as busy (the cores were taken)."""
    text = Path("/proc/stat").read_text() if stat is None else stat
    fields = [int(x) for x in text.split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_cores(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Cores kept busy on average between two ``cpu_jiffies()`` readings."""
    total = after[1] - before[1]
    return round((os.cpu_count() or 1) * (after[0] - before[0]) / total, 2) if total else 0.0


def _run(workers: int, *, cache: Path, out: Path) -> dict[str, Any]:
    results = out / f"workers-{workers}"
    argv = [sys.executable, "-m", "lab.cli", "run", "--cache", str(cache),
            "--results", str(results), "--workers", str(workers)]
    for k in KERNELS:
        argv += ["--kernel", k]
    load = os.getloadavg()
    jiffies = cpu_jiffies()
    started = time.monotonic()
    res = proc.run(argv, phase=f"bench matrix --workers {workers}",
                   log_path=out / f"matrix-workers-{workers}.log", timeout=7200, check=False)
    wall = time.monotonic() - started
    busy = busy_cores(jiffies, cpu_jiffies())
    runs = sorted(results.glob("*/summary.json"))
    counts = json.loads(runs[-1].read_text())["counts"] if runs else {}
    return {"wall_s": round(wall, 1), "exit": res.returncode, "load_before": list(load),
            "busy_cores": busy,
            "tests": sum(counts.values()), "counts": {v: n for v, n in counts.items() if n}}


def matrix_ratio(*, cache: Path, out: Path) -> dict[str, Any]:
    """Wall times of the matrix with 1 and 2 workers, and their ratio."""
    one = _run(1, cache=cache, out=out)
    print(f"matrix, --workers 1: {one['wall_s']}s, exit {one['exit']}, "
          f"{one['tests']} tests, load {one['load_before'][0]:.2f}, "
          f"{one['busy_cores']} cores busy", flush=True)
    two = _run(2, cache=cache, out=out)
    print(f"matrix, --workers 2: {two['wall_s']}s, exit {two['exit']}, "
          f"{two['tests']} tests, load {two['load_before'][0]:.2f}, "
          f"{two['busy_cores']} cores busy", flush=True)
    return {"kernels": list(KERNELS), "workers_1": one, "workers_2": two,
            "load_after": list(os.getloadavg()), "cpus": os.cpu_count(),
            "ratio": round(two["wall_s"] / one["wall_s"], 2), "goal": "<= 0.65"}
