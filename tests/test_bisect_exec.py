"""`lab bisect --exec`: a bisection whose one test is the user's program, run by `lab exec`.

A real git history (tests/bisect_fake.py) with fakes at the build seam and at the
process seam: the fake `lab exec` runs the program for real, on the host, with the
commit's fs/aio.c in its environment (the program fails where it says REGRESSION), and
writes the record the real one writes.  The real `lab exec` is tests/test_exec_real.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import bisect_fake as bf
import pytest

from lab.bisect.command import BisectOptions, Seams, bisect
from lab.bisect.journal import Journal
from lab.errors import UserError
from lab.results.cell import cell_label, short_label
from lab.results.record import Record, new_run_dir
from lab.run.config import RunConfig

REPO = Path(__file__).resolve().parents[1]
HISTORY = {7: ["BROKEN"], 8: ["-BROKEN"], 10: ["REGRESSION"]}
REPRO = '#!/bin/sh\ncase "$FAKE_AIO_C" in *REGRESSION*) echo bad; exit 1;; esac\nexit 0\n'


class FakeExec:
    """The `lab exec` process: the program run on the host, one record as lab exec writes."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str], log_path: Path) -> int:
        self.calls.append(list(argv))
        assert list(argv[1:4]) == ["-m", "lab.cli", "exec"], argv
        spec = argv[argv.index("--kernel") + 1]
        out = Path(argv[argv.index("--results") + 1])
        program = list(argv[argv.index("--") + 1:])
        ran = subprocess.run(program, capture_output=True, text=True, env={
            **os.environ, "FAKE_AIO_C": bf.content(spec, self.cache)})
        log_path.write_text(ran.stdout)
        label = cell_label(spec, None)
        rec = Record(test=f"exec::{Path(program[0]).name}", cell=label, duration=0.1,
                     verdict="PASS" if ran.returncode == 0 else "FAIL",
                     reason="" if ran.returncode == 0 else f"exit {ran.returncode}",
                     accel={"name": "tcg"})
        run_dir = new_run_dir(out, "exec-" + short_label(spec))
        (run_dir / "results.jsonl").write_text(json.dumps(dataclasses.asdict(rec)) + "\n")
        return 0 if ran.returncode == 0 else 1


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    repo = tmp_path_factory.mktemp("history") / "linux"
    return repo, bf.make_history(repo, 16, HISTORY)


def _bisect(repo: Path, cache: Path, state: Path, *, good: str = "", bad: str = "",
            program: Sequence[str] = (), resume: bool = False,
            timeout: str | None = None) -> tuple[int, FakeExec]:
    launch = FakeExec(cache)
    if resume:
        opts = BisectOptions(resume=state, run=RunConfig(cache=cache))
    else:
        opts = BisectOptions(run=RunConfig(cache=cache), repo=repo, good=good, bad=bad,
                             runs="1", state=state, exec_=tuple(program), timeout=timeout)
    rc = bisect(opts, argv=["lab", "bisect"], seams=Seams(
        builder=bf.FakeBuilder(repo, cache), launch=launch))
    return rc, launch


def test_exec_bisects_with_the_program_and_pins_it(
        history: tuple[Path, list[str]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    repo, commits = history
    repro = tmp_path / "repro.sh"
    repro.write_text(REPRO)
    repro.chmod(0o755)
    cache, state = tmp_path / "cache", tmp_path / "state"
    rc, launch = _bisect(repo, cache, state, good=commits[0], bad=commits[15],
                         program=[str(repro), "arg one"], timeout="60")
    out = capsys.readouterr().out
    assert rc == 0, out
    assert f"first bad commit: {commits[10]}\n" in out
    # Each run is `lab exec` of one commit's kernel, with the guest's options and the program.
    for argv in launch.calls:
        assert argv[argv.index("--accel") + 1] == "auto" and "-k" not in argv
        assert argv[argv.index("--timeout") + 1] == "60"
        assert argv[argv.index("--") + 1:] == [str(repro), "arg one"]
    res = bf.result(state)
    assert res["reproducer"] == (f"lab exec --kernel git:{repo}@{commits[10]} --accel auto "
                                 f"--cpus 2 --memory 2G --timeout 60 -- {repro} 'arg one'")
    start = Journal(state).start()
    assert start is not None and start["keyword"] is None
    assert start["selected"] == ["exec::repro.sh"]
    assert start["exec"]["args"] == ["arg one"] and start["exec"]["timeout"] == 60.0
    assert len(start["exec_sha256"]) == 64
    # Resumed with the program as it was: the journal replays, nothing runs again.
    rc, again = _bisect(repo, cache, state, resume=True)
    assert rc == 0 and again.calls == []
    # Another bisection of the same tree with the same program reuses its runs...
    rc, same = _bisect(repo, cache, tmp_path / "state1", good=commits[0], bad=commits[15],
                       program=[str(repro), "arg one"], timeout="60")
    # (all but a fresh run at the bad endpoint, which the driver always makes)
    assert rc == 0 and len(same.calls) == 1 < len(launch.calls)
    # ... and one with other arguments does not.
    rc, other = _bisect(repo, cache, tmp_path / "state2", good=commits[0], bad=commits[15],
                        program=[str(repro), "arg two"], timeout="60")
    assert rc == 0 and len(other.calls) == len(launch.calls)
    # A changed program is refused: the journal's runs tested the old one.
    repro.write_text(REPRO.replace("exit 1", "exit 2"))
    with pytest.raises(UserError, match=r"repro.sh changed since the bisection in .* began"):
        _bisect(repo, cache, state, resume=True)
    # Nor does one of the changed program.
    rc, changed = _bisect(repo, cache, tmp_path / "state3", good=commits[0], bad=commits[15],
                          program=[str(repro), "arg one"], timeout="60")
    assert rc == 0 and len(changed.calls) == len(launch.calls)


def test_exec_and_k_are_exclusive_and_timeout_needs_exec(
        history: tuple[Path, list[str]], tmp_path: Path) -> None:
    repo, commits = history
    base = [sys.executable, "-m", "lab.cli", "bisect", "--repo", str(repo), "--good",
            commits[0], "--bad", commits[15], "--cache", str(tmp_path / "cache"), "--state",
            str(tmp_path / "state")]
    for extra, says in ((["-k", "destroy", "--exec", "/bin/true"], "-k and --exec are "
                                                                   "exclusive"),
                        (["-k", "destroy", "--timeout", "5"], "--timeout is for --exec"),
                        (["--exec", "/no/such/repro"], "/no/such/repro: no such file"),
                        (["--timeout", "0", "--exec", "/bin/true"], "--timeout 0")):
        res = subprocess.run([*base, *extra], capture_output=True, text=True, timeout=120,
                             cwd=REPO)
        assert res.returncode == 2, res.stdout + res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0], lines
        assert not (tmp_path / "state").exists()
