"""The matrix for real: two Debian kernels on two workers, the nightly workflow's shard and
merge commands, the report opened in Chromium, the KCIDB export of a real run.

Boots: two for the unsharded run (one per kernel, in parallel), two per shard (split by cell,
as the nightly: its one cell split over the two workers): six in all,
about three minutes under TCG here.
"""

from __future__ import annotations

import glob
import json
import re
import shlex
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest
from browser import dump_dom, parse
from kcidb_io.schema import LATEST
from labrun import REPO, SCENARIOS, LabRun, lab_run

from lab.paths import cache_root
from lab.results.cell import label_of
from lab.vm.slots import SLOTS_ENV

pytestmark = [pytest.mark.vm, pytest.mark.network, pytest.mark.browser]
SUITE = SCENARIOS / "aio"
KERNELS = ["debian:7.2", "debian:6.1"]
WORKFLOW = REPO / ".github" / "workflows" / "nightly.yml"


def workflow_line(pattern: str) -> str:
    """The one command in the nightly workflow that ``pattern`` matches (its first group)."""
    found = [m.group(1) for line in WORKFLOW.read_text().splitlines()
             if (m := re.search(pattern, line))]
    assert len(found) == 1, (pattern, found)
    return found[0].strip()


def lab(*args: str, cwd: Path, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout)


def pairs(records: list[dict[str, object]]) -> set[tuple[object, object, object]]:
    return {(r["cell"], r["test"], r["verdict"]) for r in records}


@pytest.fixture(scope="module")
def unsharded(tmp_path_factory: pytest.TempPathFactory) -> LabRun:
    # One CPU slot, as on a 2-core host: the two workers' first boots take turns.
    run = lab_run(tmp_path_factory.mktemp("unsharded"), "--kernel", KERNELS[1], "--workers",
                  "2", "--suite", str(SUITE), kernel=KERNELS[0], env={SLOTS_ENV: "1"})
    assert run.returncode == 0, run.out[-5000:]
    return run


def test_two_kernels_on_two_workers(unsharded: LabRun) -> None:
    recs = unsharded.records()
    assert {r["cell"] for r in recs} == set(KERNELS)
    assert all(r["cell"] == label_of(r["kernel"]) for r in recs)
    per_cell = {c: [r for r in recs if r["cell"] == c] for c in KERNELS}
    assert len(per_cell["debian:7.2"]) == len(per_cell["debian:6.1"]) >= 30
    # The aio suite's kernel-dependent tests SKIP where the kernel lacks the feature
    # (RWF_ATOMIC, RWF_DONTCACHE on 6.1), each with its reason; nothing else.
    assert {r["verdict"] for r in recs} <= {"PASS", "SKIP"} and any(
        r["verdict"] == "PASS" for r in recs)
    assert all(r["reason"] for r in recs if r["verdict"] == "SKIP")
    assert {r["kernel"]["release"][:3] for r in recs} == {"7.2", "6.1"}
    # Each worker booted one cell once and served all of its tests.
    phases = [json.loads(x) for x in (unsharded.run_dir / "phases.jsonl").read_text()
              .splitlines()]
    boots = sorted(p["kernel"] for p in phases if p["phase"] == "boot")
    assert boots == sorted(KERNELS), boots
    # Both workers began with a boot and there was one slot: one of them waited for it.
    waits = [p for p in phases if p["phase"] == "slot-wait"]
    assert waits and all(p["before"] == "boot" and p["seconds"] > 1 for p in waits), phases
    consoles = sorted(p.name for p in unsharded.run_dir.glob("console-*.log"))
    assert len(consoles) == 2 and {c.split("-")[1] for c in consoles} == {"gw0", "gw1"}, consoles
    assert "6.1.0" in "".join(consoles) and "7.2.13" in "".join(consoles)
    # One progress line per cell as it completes.
    for cell in KERNELS:
        n = len(per_cell[cell])
        seen = Counter(r["verdict"] for r in per_cell[cell])
        counts = ", ".join(f"{seen[v]} {v}" for v in ("PASS", "SKIP") if seen[v])
        assert re.search(rf"kernel-lab: \[{re.escape(cell)}\] {n}/{n} \({counts}\) done",
                         unsharded.out), unsharded.out[-3000:]
    suites = ET.parse(unsharded.run_dir / "junit.xml").getroot().findall("testsuite")
    assert [(s.get("name"), s.get("tests")) for s in suites] == [
        (c, str(len(per_cell[c]))) for c in KERNELS]
    assert (unsharded.run_dir / "report.html").is_file()


def test_workflow_shards_merged_equal_the_unsharded_run(unsharded: LabRun,
                                                        tmp_path: Path) -> None:
    # The workflow's own commands, with this machine's matrix: the runners' jobs are
    # directories here, and "downloading the artifacts" is a copy.
    matrix = " ".join(f"--kernel {k}" for k in KERNELS) + f" --suite {SUITE}"
    shard_args = workflow_line(r"run: \S+/nox -s lab -- (.+)$")
    assert "--shard ${{ matrix.shard }}/${{ strategy.job-total }}" in shard_args
    shards = []
    for i in (1, 2):
        job = tmp_path / f"job{i}"
        job.mkdir()
        args = (shard_args.replace("$LAB_MATRIX", matrix)
                .replace("${{ matrix.shard }}", str(i))
                .replace("${{ strategy.job-total }}", "2"))
        res = lab("run", *shlex.split(args), "--cache", str(cache_root()), cwd=job)
        assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
        (run_dir,) = (job / "shard-results").iterdir()
        download = tmp_path / "report" / "shards" / f"shard-{i}"
        shutil.copytree(run_dir, download / run_dir.name)
        shards.append([json.loads(x) for x in (run_dir / "results.jsonl").read_text()
                       .splitlines()])
    one, two = (pairs(s) for s in shards)
    assert one and two and not one & two  # disjoint, and each shard ran something
    assert one | two == pairs(unsharded.records())

    report_job = tmp_path / "report"
    # The checkout's known issues, which the report job names.
    shutil.copy(REPO / "known-issues.toml", report_job / "known-issues.toml")
    merge = shlex.split(workflow_line(r"^\s*lab merge (.+?)(?: \|\| status=\$\?)?$"))
    expanded = [a for arg in merge
                for a in (sorted(glob.glob(arg, root_dir=report_job)) if "*" in arg else [arg])]
    res = lab("merge", *expanded, cwd=report_job)
    assert res.returncode == 0, res.stdout + res.stderr
    merged = report_job / "merged"
    recs = [json.loads(x) for x in (merged / "results.jsonl").read_text().splitlines()]
    assert pairs(recs) == pairs(unsharded.records())
    assert "0 MISS" in res.stdout
    assert json.loads((merged / "matrix.json").read_text())["shard"] is None
    assert len(list(merged.glob("console-s1of2-*.log"))) == 2

    shutil.copytree(unsharded.run_dir, report_job / "previous")
    report = shlex.split(workflow_line(r"^\s*lab report (.+--baseline.+?)(?: \|\| status=\$\?)?$"))
    res = lab("report", *report, cwd=report_job)
    assert res.returncode == 0, res.stderr
    compare = shlex.split(workflow_line(r"^\s*lab compare (.+?) >"))
    res = lab("compare", *compare, cwd=report_job)
    assert res.returncode == 0 and "\nregressions (" in res.stdout, res.stdout + res.stderr
    assert "): 0\n" in res.stdout.split("\nregressions (", 1)[1], res.stdout
    assert res.stdout.rstrip().endswith("no regression, no check lost")

    page = parse(dump_dom(merged / "report.html"))
    grid = page.one("table", id="grid")
    rows = grid.find_all("tr", cls="row")
    assert len(rows) == len(recs) // 2
    shown = {td.attrs["class"] for r in rows for td in r.find_all("td", cls="v")}
    assert shown == {f"v v-{v}" for _, _, v in pairs(recs)}, shown
    assert not page.one(id="regressions").find_all("tr", cls="item")

    res = lab("export", "--kcidb", str(merged), "-o", str(tmp_path / "kcidb.json"), cwd=REPO)
    assert res.returncode == 0, res.stderr
    data = json.loads((tmp_path / "kcidb.json").read_text())
    LATEST.validate(data)
    assert len(data["tests"]) == len(recs) and len(data["builds"]) == 2
    assert {t["status"] for t in data["tests"]} == {v for _, _, v in pairs(recs)}
