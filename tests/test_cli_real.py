"""What `lab run` says about itself, on real runs: the boot's progress and accelerator, the
guest's options reaching QEMU and the kernel, SKIP lines at the test, node ids, Ctrl-C,
and `lab rerun --failed --repeat 2` of the interrupted run.

Each test is one `lab run` (one boot of debian:7.2 from the shared cache) or none.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from labrun import REPO, LabRun, lab_cmd, lab_run, qemus_of

from lab.paths import cache_root
from lab.results.cell import scenario_of

pytestmark = [pytest.mark.vm, pytest.mark.network]


NOOP = "scenarios/aio/test_io_submit.py::test_noop_opcode"


def test_a_run_says_how_it_boots_and_where_its_skips_are(tmp_path: Path) -> None:
    # Two node ids: one as records show it (with its cell), one a whole file.
    run = lab_run(tmp_path, "--memory", "2048M", "--append", "nokaslr", "--cpus", "2",
                  "--", f"{NOOP}[debian:7.2]", "scenarios/enosys/test_enosys.py")
    out = run.out
    assert run.returncode == 0, out[-5000:]
    recs = run.records()
    assert {r["verdict"] for r in recs} == {"PASS", "SKIP"} and len(recs) == 13
    assert {r["test"].split("::")[0] for r in recs} == {"scenarios/aio/test_io_submit.py",
                                                        "scenarios/enosys/test_enosys.py"}
    # The boot: a line when it starts (the accelerator and why), one when the guest is up.
    booting = [ln for ln in out.splitlines() if ln.startswith("kernel-lab: [debian:7.2] booting")]
    assert len(booting) == 1, out[-5000:]
    accel = recs[0]["accel"]
    assert accel["name"] in ("kvm", "tcg") and accel["reason"], accel
    assert booting[0].startswith("kernel-lab: [debian:7.2] booting 7.2.")
    assert booting[0].endswith(f"({accel['mode']}: {accel['reason']})"), booting[0]
    up = next(ln for ln in out.splitlines() if "] guest up in " in ln)
    for milestone in ("kernel", "init", "network", "ssh", "agent"):
        assert re.search(rf"[(\s]{milestone} \d+\.\d s", up), up
    # Every record, the summary and the report name it; the skipped tests ran on that cell.
    assert all(r["accel"] == accel for r in recs)
    summary = json.loads((run.run_dir / "summary.json").read_text())
    described = f"{accel['mode']}: {accel['reason']}"
    assert summary["accelerators"] == {"debian:7.2": [described]}
    assert f"accelerator: {described}" in out
    assert described in (run.run_dir / "report.html").read_text()
    # SKIP lines point at the test, not at the lab's hook; no benchmark jargon.
    skipped = [ln for ln in out.splitlines() if ln.startswith("SKIPPED [")]
    assert skipped and all("scenarios/enosys/test_enosys.py:" in ln for ln in skipped), skipped
    assert "lab/run/" not in out and "goal" not in out and "vng --exec" not in out
    # The options reached virtme-ng and the kernel.
    console = next(run.run_dir.glob("console-*.log")).read_text(errors="replace")
    assert "--cpus 2 --memory 2048M" in console.splitlines()[0]
    # A long command line (deep paths) is printed on several "Kernel command line:" lines.
    command_line = " ".join(ln for ln in console.splitlines() if "Kernel command line:" in ln)
    assert " nokaslr" in command_line
    # command.txt reproduces it pinned: the package that ran, the accelerator, the options;
    # from any directory (the lab finds its own scenarios' node ids: no `cd` into the lab).
    command, given = (run.run_dir / "command.txt").read_text().splitlines()
    version = recs[0]["kernel"]["package_version"]
    assert command == (f"lab run --kernel debian:{version}"
                       f" --accel {accel['name']} --cpus 2 --memory 2048M --append nokaslr -- "
                       f"'{NOOP}[debian:7.2]' scenarios/enosys/test_enosys.py")
    assert given.startswith("# as given: cd ") and "--kernel debian:7.2 " in given


def test_a_node_id_that_matches_no_test_is_exit_2(tmp_path: Path) -> None:
    """A parameter only collection knows (another cell's): one line, no run directory."""
    res = subprocess.run(lab_cmd(tmp_path, "--", f"{NOOP}[debian:6.1]"), cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 2, res.stdout[-3000:] + res.stderr
    errors = [ln for ln in res.stderr.splitlines() if "error" in ln]
    assert errors == [f"lab: error: node id '{NOOP}[debian:6.1]' matches no test of this run "
                      "(its cells and parameters)"], res.stderr
    assert "Traceback" not in res.stderr
    assert not list((tmp_path / "results").glob("*"))


SLOW_SUITE = '''
from pathlib import Path
from typing import Any

STARTED = Path({started!r})
HOLD = Path({hold!r})


def test_passes(agent: Any) -> None:
    assert agent.errno_of("aio.destroy", ctx=0) == "EINVAL"


def test_fails(agent: Any) -> None:
    assert agent.errno_of("aio.destroy", ctx=0) == "EBADF"


def test_race_then_fail(agent: Any, record: Any) -> None:
    # A real race loop (a few rounds), its overlap kept as the race suites keep it; then
    # a failure, so that `lab rerun --failed` runs it again.
    got = agent.call("race.concurrent_destroy", threads=2, polls=2, iterations=30,
                     seconds=3.0)
    record("overlap", {{"rounds": got["overlap_rounds"], "overlapped": got["overlapped"],
                        "rate": got["overlap_rate"]}})
    assert got["iterations"] < 0, "fails on purpose, after racing"


def test_slow(agent: Any) -> None:
    STARTED.touch()
    while HOLD.exists():  # until the run is interrupted, in an agent call most likely
        agent.call("sys.uname")


def test_after(agent: Any) -> None:
    assert agent.call("sys.uname")

'''


@dataclass(frozen=True)
class Interrupted:
    """A `lab run` sent SIGINT (as a terminal's Ctrl-C) while a test ran, and its suite."""

    run: LabRun
    suite: Path
    hold: Path


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Interrupted]:
    tmp = tmp_path_factory.mktemp("ctrl-c")
    started, hold = tmp / "started", tmp / "hold"
    hold.touch()
    suite = tmp / "suite"
    suite.mkdir()
    (suite / "test_slow.py").write_text(textwrap.dedent(
        SLOW_SUITE.format(started=str(started), hold=str(hold))))
    # Its own session, as a shell runs a command in its own process group: Ctrl-C goes
    # to the whole group (QEMU runs in a session of its own, lab.proc).
    child = subprocess.Popen(lab_cmd(tmp, "--suite", str(suite)), cwd=REPO, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 900
        while not started.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert started.exists(), "the slow test never started"
        time.sleep(1.0)  # well inside the test
        os.killpg(child.pid, signal.SIGINT)
        out, _ = child.communicate(timeout=300)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    [run_dir] = sorted((tmp / "results").glob("*"))
    yield Interrupted(LabRun(child.returncode, out, run_dir), suite, hold)


def test_ctrl_c_exits_130_and_keeps_what_ran(interrupted: Interrupted) -> None:
    run = interrupted.run
    assert run.returncode == 130, run.out[-5000:]
    by_name = run.by_name()
    assert by_name["test_passes"]["verdict"] == "PASS"
    assert by_name["test_fails"]["verdict"] == "FAIL"
    assert by_name["test_race_then_fail"]["verdict"] == "FAIL"
    # The interrupted test says how long its call had run (no splat: still NOTRUN).
    slow = by_name["test_slow"]
    assert slow["verdict"] == "NOTRUN" and not slow["splats"], slow
    assert re.fullmatch(r"not finished: interrupted \(Ctrl-C\) after \d+\.\d s in its call",
                        slow["reason"]), slow["reason"]
    assert slow["data"]["interrupted"]["seconds"] >= 1.0
    assert by_name["test_after"]["reason"] == "not run: interrupted (Ctrl-C)"
    summary = json.loads((run.run_dir / "summary.json").read_text())
    assert summary["stopped"] == "interrupted (Ctrl-C)" and summary["counts"]["PASS"] == 1
    assert "the run was cut short (2 tests not run): interrupted (Ctrl-C)" in run.out
    assert f"lab rerun {run.run_dir} --failed" in run.out
    junit = (run.run_dir / "junit.xml").read_text()
    assert "test_passes" in junit and "test_fails" in junit
    assert "test_fails" in (run.run_dir / "report.html").read_text()
    # The guest ended with the run: no QEMU, no VM directory left.
    assert not qemus_of(run.run_dir)
    assert not [p for p in run.run_dir.iterdir() if p.is_dir()]


def test_rerun_failed_repeated_twice(interrupted: Interrupted, tmp_path: Path) -> None:
    """The interrupted run again: its failures and unrun tests, twice each, on the kernel
    that ran (pinned) with the accelerator that ran; the race's overlap each time."""
    first = interrupted.run
    interrupted.hold.unlink()  # the slow test now ends at once
    accel = first.by_name()["test_passes"]["accel"]["name"]
    res = subprocess.run([sys.executable, "-m", "lab.cli", "rerun", str(first.run_dir),
                          "--failed", "--repeat", "2", "--results", str(tmp_path / "results"),
                          "--cache", str(cache_root())],
                         cwd=REPO, capture_output=True, text=True, timeout=1800)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out[-5000:]
    [run_dir] = sorted((tmp_path / "results").glob("*"))
    rerun = LabRun(res.returncode, out, run_dir)
    recs = rerun.records()
    by_test: dict[str, list[dict[str, object]]] = {}
    for r in recs:
        by_test.setdefault(str(r["test"]).split("::")[1].split("[")[0], []).append(r)
    # FAIL and NOTRUN again, twice each; PASS not.
    assert sorted(by_test) == ["test_after", "test_fails", "test_race_then_fail", "test_slow"]
    # The same test ids as the run's, for a suite outside the lab (rooted at the suite as
    # the run was, not at the lab: "::test_fails").
    assert {scenario_of(str(r["test"]), str(r["cell"])) for r in recs} == {
        scenario_of(str(r["test"]), str(r["cell"])) for r in first.records()
        if r["verdict"] != "PASS"}
    assert all(str(r["test"]).startswith("test_slow.py::") for r in recs), recs[0]["test"]
    for name, runs in by_test.items():
        assert sorted(int(str(r["repeat"])) for r in runs) == [1, 2], name
    assert {r["verdict"] for r in by_test["test_slow"] + by_test["test_after"]} == {"PASS"}
    assert {r["verdict"] for r in by_test["test_fails"]} == {"FAIL"}
    release = first.by_name()["test_passes"]["kernel"]["package_version"]
    assert all(r["kernel"]["spec"] == f"debian:{release}" and r["cell"] == f"debian:{release}"
               for r in recs)
    assert all(r["accel"]["name"] == accel for r in recs)
    # Each repetition of the race says how often it raced, in the summary and the output.
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["counts"]["FAIL"] == 4 and summary["counts"]["PASS"] == 4
    [race] = [r for r in summary["repeated"] if "test_race_then_fail" in r["test"]]
    rates = [r["data"]["overlap"]["rate"] for r in sorted(by_test["test_race_then_fail"],
                                                           key=lambda r: int(str(r["repeat"])))]
    assert race["verdicts"] == ["FAIL", "FAIL"] and race["overlap"] == rates
    assert f"repeated {race['test']} x2: FAIL, FAIL; overlap " in out
    command = (run_dir / "command.txt").read_text().splitlines()
    assert f"--kernel debian:{release} --accel {accel} " in command[0]
    assert "--repeat 2 --" in command[0] and command[1].startswith("# as given: ")
