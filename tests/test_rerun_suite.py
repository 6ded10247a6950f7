"""`lab run`, `lab rerun` and a reproducer of a suite outside the lab, for real but with
no guest: the suite's tests take the kernel fixture only (debian:7.2 from the shared
cache), so nothing boots.  The rerun's test ids are the run's, and what the run was
given after `--` and as `--known-issues` comes along."""

from __future__ import annotations

import datetime as dt
import json
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from labrun import LabRun

from lab.paths import cache_root
from lab.results.cell import scenario_of

pytestmark = pytest.mark.network  # debian:7.2, unless the cache has it

TESTS = '''
def test_a(kernel):
    pass


def test_b(kernel):
    assert False, "fails on purpose"


def test_c(kernel):
    assert False, "a known issue"


def test_d(kernel):
    assert False, "deselected"


class TestE:
    def test_e(self, kernel):
        pass
'''


def _lab(cwd: Path, results: Path, *args: str) -> LabRun:
    """`lab ARGS...` from ``cwd``, its run directory under ``results`` (a new one)."""
    before = set(results.glob("*")) if results.is_dir() else set()
    command, rest = args[0], list(args[1:])
    # The run's own options go before `--` (pytest's arguments follow it).
    at = rest.index("--") if "--" in rest else len(rest)
    rest[at:at] = ["--results", str(results), "--cache", str(cache_root())]
    res = subprocess.run([sys.executable, "-m", "lab.cli", command, *rest], cwd=cwd,
                         capture_output=True, text=True, timeout=600)
    out = res.stdout + res.stderr
    made = sorted(set(results.glob("*")) - before)
    assert len(made) == 1, out[-3000:]
    return LabRun(res.returncode, out, made[0])


def _ids(run: LabRun) -> dict[str, str]:
    """Scenario (the test id without its cell) → verdict."""
    return {scenario_of(r["test"], r["cell"]): r["verdict"] for r in run.records()}


def test_reruns_and_reproducers_of_a_suite_outside_the_lab(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    (suite / "sub").mkdir(parents=True)
    (suite / "sub" / "test_x.py").write_text(textwrap.dedent(TESTS))
    known = tmp_path / "mine.toml"
    expires = dt.date.today() + dt.timedelta(days=60)
    # The cell is a glob: a rerun names the pinned kernel (debian:7.2.N-M).
    known.write_text(f'[[issue]]\ntest = "sub/test_x.py::test_c"\ncell = "debian:7.2*"\n'
                     f'verdicts = ["FAIL"]\nurl = "https://example.org/1"\n'
                     f'expires = {expires}\nwildcard_reason = "the run and its reruns"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    results = tmp_path / "results"

    # From a directory beside the suite: the ids are rooted at the suite (left to itself,
    # pytest roots them at the common ancestor of the suite and the current directory, so
    # they would change with where the run was started: lab.paths.suite_rootdir_args).
    run = _lab(elsewhere, results, "run", "--kernel", "debian:7.2", "--suite", str(suite),
               "--known-issues", str(known), "--", "--deselect", "sub/test_x.py::test_d")
    assert run.returncode == 1, run.out[-3000:]
    first = _ids(run)
    assert first == {"sub/test_x.py::test_a": "PASS",
                     "sub/test_x.py::test_b": "FAIL",
                     "sub/test_x.py::test_c": "XFAIL",
                     "sub/test_x.py::TestE::test_e": "PASS"}
    # The same ids from a directory that shares no ancestor with the suite but /.
    away = _lab(Path("/"), results, "run", "--kernel", "debian:7.2", "--suite", str(suite),
                "--known-issues", str(known), "--", "--deselect", "sub/test_x.py::test_d")
    assert _ids(away) == first, away.out[-3000:]

    # Again, whole: the same ids, test_d still deselected, test_c still a known issue.
    again = _lab(tmp_path, results, "rerun", str(run.run_dir))
    assert again.returncode == 1, again.out[-3000:]
    assert _ids(again) == first
    # Its failures: test_b alone, by the same id (was "::test_b").
    failed = _lab(tmp_path, results, "rerun", str(run.run_dir), "--failed")
    assert _ids(failed) == {"sub/test_x.py::test_b": "FAIL"}, failed.records()
    # The reproducer of test_b, as the summary gives it.
    summary = json.loads((run.run_dir / "summary.json").read_text())
    (repro,) = summary["reproducers"].values()
    where, _, command = repro.partition(" && ")
    assert where == f"cd {shlex.quote(str(suite))}" and "--suite . " in command, repro
    assert f"--known-issues {known}" in command
    assert command.endswith("-- --deselect sub/test_x.py::test_d sub/test_x.py::test_b"), command
    argv = shlex.split(command)
    assert argv[:2] == ["lab", "run"]
    again_b = _lab(suite, results, *argv[1:])
    assert _ids(again_b) == {"sub/test_x.py::test_b": "FAIL"}, again_b.out[-3000:]
    # A class by its node id: its tests (it passed the check, then matched nothing).
    cls = _lab(suite, results, "run", "--kernel", "debian:7.2", "--suite", ".", "--",
               "sub/test_x.py::TestE")
    assert cls.returncode == 0, cls.out[-3000:]
    assert _ids(cls) == {"sub/test_x.py::TestE::test_e": "PASS"}
