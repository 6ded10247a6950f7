"""A real bisection: 16 commits made from Debian's linux-source-7.2, real builds, real boots.

The history (lab.bench.history.aio_regression_changes) is notes, a build break
at commit 7 repaired by commit 8, and at commit 10 io_destroy of an unknown
context returning ENOENT instead of EINVAL, which
scenarios/aio/test_io_destroy.py::test_destroy_twice_is_einval sees.  It is made
once (one ``git add`` of the tree) and kept in the cache, like the lab's clone of
it and that clone's object tree: a second run builds incrementally from where the
last one left the tree, as a developer's second bisection would.  The kernels
built from its commits are removed first, so every step really builds (the base
config, one object tree, ccache) and boots.  The first run ever pays a cold build
(~5 min on 2 idle cores); later ones about a minute per step (build and boot).
The revert check is left to tests/test_bisect.py (a real revert in the lab's clone,
fakes at the build and run seams): here it would cost one more build and boot.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lab.bench import history
from lab.kernel.source import debian_source
from lab.paths import cache_root

pytestmark = [pytest.mark.vm, pytest.mark.network, pytest.mark.build]
REPO = Path(__file__).resolve().parents[1]
TARGET = "test_destroy_twice_is_einval"


def test_a_real_bisection_finds_the_errno_change_and_skips_the_broken_build(
    tmp_path: Path,
) -> None:
    cache = cache_root()
    tree = debian_source("7.2", cache=cache)
    hist = history.make(cache, tree, "aio-destroy-enoent", history.aio_regression_changes())
    good, broken, culprit, bad = (hist.commits[i] for i in (0, 7, 10, 15))
    history.forget_builds(cache, hist.repo)
    state = tmp_path / "state"
    t0 = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "lab.cli", "bisect", "--repo", str(hist.repo), "--good", good,
         "--bad", bad, "-k", TARGET, "--runs", "1", "--no-reuse",
         "--state", str(state), "--cache", str(cache)],
        capture_output=True, text=True, timeout=5400, cwd=REPO)
    wall = time.monotonic() - t0
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-6000:]
    assert f"first bad commit: {culprit}" in res.stdout.splitlines(), out[-3000:]
    data: dict[str, Any] = json.loads((state / "bisect.json").read_text())
    assert data["kind"] == "culprit" and data["confidence"] == 1.0
    assert data["subject"] == "aio: io_destroy of an unknown context returns ENOENT"
    steps = {s["point"]: s for s in data["steps"]}
    assert steps[broken]["verdict"] == "skip" and "build failed" in steps[broken]["why"]
    assert "does not build" in steps[broken]["why"]  # the #error line from make's output
    assert steps[good]["verdict"] == "good" and steps[bad]["verdict"] == "bad"
    assert not [w for w in data["warnings"] if "same kernel image" in w]
    assert "fs/aio.c | 2 +-" in data["diffstat"]
    # With no known issues, as the bisection's runs had them.
    assert data["reproducer"] == (f"lab run --kernel git:{hist.repo}@{culprit} --accel auto "
                                  f"--cpus 2 --memory 2G --known-issues /dev/null -k {TARGET}")
    runs = [json.loads(ln) for ln in (state / "journal.jsonl").read_text().splitlines()
            if '"kind": "run"' in ln]
    # Each run keeps the conditions a later bisection must share to reuse it.
    assert runs and all(r["accel"] in ("kvm", "tcg") and len(r["lab"]) == 16
                        and r["known_issues"] == "none" for r in runs), runs[:1]
    # The figures for the record: wall time and each step's build and test seconds.
    print(f"\nreal bisection: wall {wall:.0f}s, median step {data['median_step_seconds']}s")
    for s in data["steps"]:
        print(f"  {s['role']:13} {s['name'][:50]:50} {s['verdict']:4} "
              f"build {s['build_seconds']:6.1f}s test {s['test_seconds']:6.1f}s "
              f"total {s['seconds']:6.1f}s")
