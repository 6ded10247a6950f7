"""Build benchmarks for `nox -s bench`: cold base vs. vng --kconfig, one-file rebuild, cache hit,
a bisection step vs a cold build, and a real bisection's step times.

Each function takes (kernel, cache) like lab.bench's EXTRA entries (the kernel
is not used: they build their own) and returns a dict of figures.  Cold builds
run with ``CCACHE_DISABLE=1`` in fresh object trees, so they measure the
compiler and not the cache; both sides of a ratio run on the same tree in the
same run, one after the other (never in parallel: the machine has 2 cores).

    python -m lab.bench.build [--only NAME] [--series 7.2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lab import proc
from lab.kernel import build, kconfig, source
from lab.kernel.artifact import Kernel
from lab.paths import cache_root

log = logging.getLogger("lab.bench.boot")

SERIES = "7.2"
TOUCHED = "fs/aio.c"
GOAL_BASE_VS_VNG = 0.40
GOAL_REBUILD_VS_COLD = 0.20
NO_CCACHE = {"CCACHE_DISABLE": "1"}


def _tree(cache: Path, series: str = SERIES) -> source.SourceTree:
    return source.debian_source(series, cache=cache)


def _count_y(config: Path) -> int:
    return sum(1 for line in config.read_text().splitlines() if line.endswith("=y"))


def _make(tree: source.SourceTree, out: Path, *targets: str, log_path: Path,
          env: dict[str, str] | None = None, jobs: int | None = None) -> float:
    argv = ["make", "-C", str(tree.path), f"O={out}", f"-j{jobs or build.make_jobs()}", *targets]
    t0 = time.monotonic()
    proc.run(argv, phase="bench:make", log_path=log_path, env=env, timeout=build.MAKE_TIMEOUT)
    return time.monotonic() - t0


def cold_base(tree: source.SourceTree, out: Path, *, log_path: Path) -> dict[str, Any]:
    """Configure ``base`` as lab.kernel.build does, then a cold ``make bzImage`` without ccache."""
    composed = kconfig.compose(None)
    build.configure(tree, composed, out, log_path=log_path)
    seconds = _make(tree, out, build.TARGET, log_path=log_path, env=NO_CCACHE)
    return {"seconds": round(seconds, 1), "y_options": _count_y(out / ".config"),
            "bzImage_bytes": (out / build.IMAGE).stat().st_size}


def cold_vng(tree: source.SourceTree, out: Path, *, log_path: Path) -> dict[str, Any]:
    """What `vng --kconfig` configures (plus NVMe built in, as the lab needs), built cold."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    exe = shutil.which("virtme-configkernel") or str(Path(sys.executable).parent /
                                                      "virtme-configkernel")
    proc.run([exe, "--defconfig", "--configitem", "CONFIG_BLK_DEV_NVME=y",
              f"O={out}"], phase="bench:config", log_path=log_path, cwd=tree.path, timeout=600)
    config_seconds = time.monotonic() - t0
    seconds = _make(tree, out, build.TARGET, log_path=log_path, env=NO_CCACHE)
    return {"seconds": round(seconds, 1), "config_seconds": round(config_seconds, 1),
            "y_options": _count_y(out / ".config"),
            "bzImage_bytes": (out / build.IMAGE).stat().st_size}


def base_vs_vng(kernel: Kernel | None, cache: Path) -> dict[str, Any]:
    """Cold build of ``base`` vs. the `vng --kconfig` config, same tree, same run."""
    tree = _tree(cache)
    with tempfile.TemporaryDirectory(prefix="bench-build-", dir=cache) as tmp:
        work = Path(tmp)
        base = cold_base(tree, work / "base", log_path=work / "base.log")
        log.info("bench: cold base %s", base)
        shutil.rmtree(work / "base")  # ~1 GB of objects: free it before the bigger build
        vng = cold_vng(tree, work / "vng", log_path=work / "vng.log")
        log.info("bench: cold vng --kconfig %s", vng)
    ratio = base["seconds"] / vng["seconds"]
    return {"tree": tree.identity, "jobs": build.make_jobs(), "base": base, "vng_kconfig": vng,
            "ratio": round(ratio, 3), "goal": GOAL_BASE_VS_VNG, "ok": ratio <= GOAL_BASE_VS_VNG}


def rebuild_after_touch(kernel: Kernel | None, cache: Path) -> dict[str, Any]:
    """Cold base build, then ``touch fs/aio.c`` and make again in the same object tree."""
    tree = _tree(cache)
    with tempfile.TemporaryDirectory(prefix="bench-rebuild-", dir=cache) as tmp:
        work = Path(tmp)
        cold = cold_base(tree, work / "base", log_path=work / "cold.log")
        # The cached tree is shared: touch only the mtime (content, hence identity, unchanged).
        os.utime(tree.path / TOUCHED)
        build.configure(tree, kconfig.compose(None), work / "base", log_path=work / "re.log")
        seconds = _make(tree, work / "base", build.TARGET, log_path=work / "re.log",
                        env=NO_CCACHE)
        steps = build._count_steps(work / "re.log", 0)
    ratio = seconds / cold["seconds"]
    return {"tree": tree.identity, "cold_seconds": cold["seconds"],
            "rebuild_seconds": round(seconds, 1), "rebuild_steps": steps,
            "ratio": round(ratio, 3), "goal": GOAL_REBUILD_VS_COLD,
            "ok": ratio <= GOAL_REBUILD_VS_COLD}


def cache_hit(kernel: Kernel | None, cache: Path, *, rounds: int = 5) -> dict[str, Any]:
    """Cost of asking again for a built kernel (debian-src:SERIES base): resolve, no build."""
    from lab.kernel.resolve import resolve_kernel

    spec = f"debian-src:{SERIES}"
    t0 = time.monotonic()
    resolve_kernel(spec, cache=cache)  # builds once if it is not cached yet
    first = time.monotonic() - t0
    times = []
    for _ in range(rounds):
        t0 = time.monotonic()
        resolve_kernel(spec, cache=cache)
        times.append(time.monotonic() - t0)
    return {"spec": spec, "first_seconds": round(first, 1),
            "hit_seconds_median": round(sorted(times)[len(times) // 2], 3),
            "hit_seconds_max": round(max(times), 3)}


@contextlib.contextmanager
def _no_ccache() -> Iterator[None]:
    # lab.kernel.build passes os.environ on to make: off for the whole measurement.
    old = os.environ.get("CCACHE_DISABLE")
    os.environ["CCACHE_DISABLE"] = "1"
    try:
        yield
    finally:
        if old is None:
            del os.environ["CCACHE_DISABLE"]
        else:
            os.environ["CCACHE_DISABLE"] = old


def bisect_step(kernel: Kernel | None, cache: Path) -> dict[str, Any]:
    """A bisection step (a commit that changes only fs/aio.c) vs a cold build, git: path.

    On the real bisection test's history (lab.bench.history): commit 9 built cold
    (make only, ccache off: its first checkout is not counted), then commit 10
    (io_destroy's errno changed in fs/aio.c) and commit 8 (changed back; the rest
    of the difference is Documentation/) through resolve_kernel("git:REPO@C") as
    `lab bisect` builds a step: checkout, config check, incremental make, publish,
    all counted, ccache still off.  In a private cache: a fresh clone and object tree.
    """
    from lab.bench import history
    from lab.kernel.resolve import resolve_kernel

    tree = _tree(cache)
    hist = history.make(cache, tree, "aio-destroy-enoent", history.aio_regression_changes())
    first, then = hist.commits[9], [hist.commits[10], hist.commits[8]]
    with tempfile.TemporaryDirectory(prefix="bench-step-", dir=cache) as tmp, _no_ccache():
        step_cache = Path(tmp)
        found = source.git_commit(hist.repo, first, cache=step_cache)
        t0 = time.monotonic()
        with source.git_checkout(found) as checked_out:
            t1 = time.monotonic()
            build.build(checked_out, None, cache=step_cache, spec_text=f"git:{hist.repo}@{first}")
        cold = time.monotonic() - t1
        steps = []
        for commit in then:
            t = time.monotonic()
            resolve_kernel(f"git:{hist.repo}@{commit}", cache=step_cache)
            steps.append(round(time.monotonic() - t, 1))
    median = statistics.median(steps)
    ratio = median / cold
    return {"tree": tree.identity, "first_checkout_seconds": round(t1 - t0, 1),
            "cold_seconds": round(cold, 1), "step_seconds": steps,
            "ratio": round(ratio, 3), "goal": GOAL_REBUILD_VS_COLD,
            "ok": ratio <= GOAL_REBUILD_VS_COLD, "load": round(os.getloadavg()[0], 1)}


def bisect_real(kernel: Kernel | None, cache: Path) -> dict[str, Any]:
    """A real `lab bisect` over tests/test_bisect_real.py's 16-commit history: its step times.

    As the test does: the history's built kernels removed first, runs not reused,
    one run per commit; the lab's clone and object tree stay as the last use left them.
    """
    from lab.bench import history

    tree = _tree(cache)
    hist = history.make(cache, tree, "aio-destroy-enoent", history.aio_regression_changes())
    history.forget_builds(cache, hist.repo)
    with tempfile.TemporaryDirectory(prefix="bench-bisect-") as tmp:
        state = Path(tmp) / "state"
        t0 = time.monotonic()
        res = proc.run([sys.executable, "-m", "lab.cli", "bisect", "--repo", str(hist.repo),
                        "--good", hist.commits[0], "--bad", hist.commits[-1], "-k",
                        "test_destroy_twice_is_einval", "--runs", "1", "--no-reuse",
                        "--state", str(state), "--cache", str(cache)],
                       phase="bench:bisect", log_path=Path(tmp) / "bisect.log", timeout=5400,
                       check=False)
        data = json.loads((state / "bisect.json").read_text()) if (
            state / "bisect.json").is_file() else {}
    steps = [s for s in data.get("steps", []) if s.get("role") == "step"]
    return {"exit": res.returncode, "wall_seconds": round(time.monotonic() - t0, 1),
            "first_bad": data.get("first_bad"), "median_step_seconds":
            data.get("median_step_seconds"), "step_seconds": [s["seconds"] for s in steps],
            "load": round(os.getloadavg()[0], 1)}


BENCHES: dict[str, Callable[[Kernel | None, Path], dict[str, Any]]] = {
    "build_base_vs_vng": base_vs_vng,
    "build_rebuild_touch": rebuild_after_touch,
    "build_cache_hit": cache_hit,
    "build_bisect_step": bisect_step,
    "build_bisect_real": bisect_real,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lab.bench.build", description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=sorted(BENCHES), action="append")
    p.add_argument("--cache", type=Path)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    cache = cache_root(args.cache)
    for name in args.only or list(BENCHES):
        figures = BENCHES[name](None, cache)
        print(json.dumps({name: figures}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
