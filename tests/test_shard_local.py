"""Shards of a tiny matrix through `lab run` and `lab merge`, without booting a guest.

The tests take only the ``kernel`` fixture (the cached debian:7.2, fetched once), so the
split, matrix.json, an empty shard and the merge are real and cost no VM.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab.paths import cache_root

pytestmark = pytest.mark.network
REPO = Path(__file__).resolve().parents[1]
SUITE = '''
import pytest


@pytest.mark.parametrize("n", range(COUNT))
def test_k(kernel, n):
    assert kernel.release.startswith("7.2.")
'''


def run(tmp_path: Path, suite: Path, *args: str) -> tuple[int, str, Path]:
    out = tmp_path / "results" / "-".join(a.replace("/", "of") for a in args)
    res = subprocess.run([sys.executable, "-m", "lab.cli", "run", "--kernel", "debian:7.2",
                          "--suite", str(suite), "--results", str(out), "--cache",
                          str(cache_root()), *args], capture_output=True, text=True,
                         cwd=REPO, timeout=900)
    (run_dir,) = out.iterdir()
    return res.returncode, res.stdout + res.stderr, run_dir


def suite(tmp_path: Path, count: int) -> Path:
    d = tmp_path / f"suite{count}"
    d.mkdir()
    (d / "test_k.py").write_text(SUITE.replace("COUNT", str(count)))
    return d


def test_shards_split_and_merge(tmp_path: Path) -> None:
    s = suite(tmp_path, 12)
    dirs = []
    for i in (1, 2, 3):
        rc, out, run_dir = run(tmp_path, s, "--shard", f"{i}/3")
        assert rc == 0, out[-3000:]
        dirs.append(run_dir)
    matrices = [json.loads((d / "matrix.json").read_text()) for d in dirs]
    assert len({json.dumps(m["expected"]) for m in matrices}) == 1  # one matrix, three parts
    assigned = [{tuple(p) for p in m["assigned"]} for m in matrices]
    assert sum(map(len, assigned)) == 12 and len(set().union(*assigned)) == 12
    res = subprocess.run([sys.executable, "-m", "lab.cli", "merge", *map(str, dirs), "--into",
                          str(tmp_path / "merged")], capture_output=True, text=True, cwd=REPO,
                         timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    recs = [json.loads(x) for x in (tmp_path / "merged" / "results.jsonl").read_text()
            .splitlines()]
    assert len(recs) == 12 and {r["verdict"] for r in recs} == {"PASS"}
    # Without shard 3 its tests are MISS, and the merged run says the machinery lost them.
    res = subprocess.run([sys.executable, "-m", "lab.cli", "merge", *map(str, dirs[:2]),
                          "--into", str(tmp_path / "partial")], capture_output=True, text=True,
                         cwd=REPO, timeout=300)
    assert res.returncode == 3, res.stdout + res.stderr
    assert f"{len(assigned[2])} MISS" in res.stdout and "shard 3/3 is missing" in res.stdout


def test_an_empty_shard_tested_nothing(tmp_path: Path) -> None:
    s = suite(tmp_path, 1)
    results = [run(tmp_path, s, "--shard", f"{i}/2") for i in (1, 2)]
    codes = sorted(rc for rc, _, _ in results)
    assert codes == [0, 4], [out[-2000:] for _, out, _ in results]
    empty = next(out for rc, out, _ in results if rc == 4)
    assert "has none of the matrix's 1 tests" in empty and "Traceback" not in empty


def test_a_split_by_cell_fetches_and_runs_only_its_own_cells(tmp_path: Path) -> None:
    # The nightly's split: shard 1/2:cell has debian:7.2 (the first cell), shard 2 debian:6.1.
    s = suite(tmp_path, 3)
    (s / "test_k.py").write_text(SUITE.replace("COUNT", "3").replace(
        'kernel.release.startswith("7.2.")', "kernel.release"))
    out = tmp_path / "results"
    res = subprocess.run([sys.executable, "-m", "lab.cli", "run", "--kernel", "debian:7.2",
                          "--kernel", "debian:6.1", "--suite", str(s), "--results", str(out),
                          "--cache", str(cache_root()), "--shard", "1/2:cell"],
                         capture_output=True, text=True, cwd=REPO, timeout=900)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    (run_dir,) = out.iterdir()
    recs = [json.loads(x) for x in (run_dir / "results.jsonl").read_text().splitlines()]
    assert {r["cell"] for r in recs} == {"debian:7.2"} and len(recs) == 3
    fetched = [json.loads(x)["kernel"] for x in (run_dir / "phases.jsonl").read_text()
               .splitlines() if json.loads(x)["phase"] == "fetch"]
    assert fetched == ["debian:7.2"], fetched  # debian:6.1 is shard 2's
    matrix = json.loads((run_dir / "matrix.json").read_text())
    assert matrix["shard"] == "1/2:cell" and len(matrix["expected"]) == 6
    # `lab fetch` of the other shard names only its cell.
    res = subprocess.run([sys.executable, "-m", "lab.cli", "fetch", "--kernel", "debian:7.2",
                          "--kernel", "debian:6.1", "--shard", "2/2:cell", "--cache",
                          str(cache_root())], capture_output=True, text=True, cwd=REPO,
                         timeout=600)
    assert res.returncode == 0 and res.stdout.startswith("debian:6.1 -> 6.1."), res.stdout
    assert "debian:7.2" not in res.stdout, res.stdout
    # Shard 2 never ran (its kernel did not build): its cell is MISS in the merge.
    res = subprocess.run([sys.executable, "-m", "lab.cli", "merge", str(run_dir), "--into",
                          str(tmp_path / "merged")], capture_output=True, text=True, cwd=REPO,
                         timeout=300)
    assert res.returncode == 3 and "3 MISS" in res.stdout, res.stdout + res.stderr
    merged = [json.loads(x) for x in (tmp_path / "merged" / "results.jsonl").read_text()
              .splitlines()]
    assert {(r["cell"], r["verdict"]) for r in merged} == {("debian:7.2", "PASS"),
                                                           ("debian:6.1", "MISS")}
