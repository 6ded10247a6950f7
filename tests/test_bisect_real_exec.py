"""A real `lab bisect --exec`: the synthetic history tests/test_bisect_real.py bisects (16
commits of Debian's linux-source-7.2, a build break at commit 7 repaired by commit 8, and
at commit 10 io_destroy of an unknown context returning ENOENT instead of EINVAL), bisected
with a C reproducer instead of -k: real builds, real boots, `lab exec` at each commit.

Builds already in the cache are used as they are: what this test checks is the
reproducer's path, not the builds (tests/test_bisect_real.py checks those, and the
skipped broken build), so it bisects commits 8 (good) to 12 (bad), whose builds that
test (which sorts before this file) has mostly left in the cache: a few boots, not a
full bisection.  A cold cache pays a full build (~5 min on 2 idle cores) first.
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

REPRO = r"""
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
    /* A context id no io_setup returned: EINVAL, or ENOENT from the culprit on. */
    long r = syscall(SYS_io_destroy, 0x1000UL);
    int e = errno;
    printf("io_destroy(unknown) = %ld (%s)\n", r, r < 0 ? strerror(e) : "ok");
    return r < 0 && e == ENOENT ? 1 : 0;
}
"""


def test_bisect_exec_finds_the_errno_change_with_a_c_reproducer(tmp_path: Path) -> None:
    cache = cache_root()
    tree = debian_source("7.2", cache=cache)
    hist = history.make(cache, tree, "aio-destroy-enoent", history.aio_regression_changes())
    good, culprit, bad = (hist.commits[i] for i in (8, 10, 12))
    repro = tmp_path / "repro.c"
    repro.write_text(REPRO)
    state = tmp_path / "state"
    t0 = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "lab.cli", "bisect", "--repo", str(hist.repo), "--good", good,
         "--bad", bad, "--runs", "1", "--no-reuse", "--state", str(state), "--cache",
         str(cache), "--timeout", "60", "--exec", str(repro)],
        capture_output=True, text=True, timeout=5400, cwd=REPO)
    wall = time.monotonic() - t0
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-6000:]
    assert f"first bad commit: {culprit}" in res.stdout.splitlines(), out[-3000:]
    data: dict[str, Any] = json.loads((state / "bisect.json").read_text())
    assert data["kind"] == "culprit" and data["confidence"] == 1.0
    steps = {s["point"]: s for s in data["steps"]}
    assert steps[good]["verdict"] == "good" and steps[bad]["verdict"] == "bad"
    assert data["reproducer"].startswith(f"lab exec --kernel git:{hist.repo}@{culprit} ")
    assert data["reproducer"].endswith(f"--timeout 60 -- {repro}")
    # Each run's record is the program's: its exit status and its output at the bad end.
    runs = [json.loads(ln) for ln in (state / "journal.jsonl").read_text().splitlines()
            if '"kind": "run"' in ln]
    assert runs and all(list(r["results"]) == ["exec::repro.c"] for r in runs), runs[:1]
    bad_run = next(r for r in runs if r["point"] == bad)
    record = json.loads(next(Path(bad_run["run_dir"]).glob("results.jsonl")).read_text())
    assert record["verdict"] == "FAIL" and record["data"]["exit_status"] == 1
    assert "(No such file or directory)" in record["excerpt"], record["excerpt"]
    print(f"\nreal bisect --exec: wall {wall:.0f}s, median step {data['median_step_seconds']}s")
    for s in data["steps"]:
        print(f"  {s['role']:13} {s['name'][:50]:50} {s['verdict']:4} "
              f"build {s['build_seconds']:6.1f}s test {s['test_seconds']:6.1f}s")
