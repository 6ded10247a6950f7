"""Verdicts that claim no more than was tested, on a real kernel under QEMU.

One `lab run` per behaviour that needs its own boot: a kernel that panics while
booting; a suite that fails in a fixture's teardown, raises in a guest op and then
crashes the guest until the reboot limit cuts the run short (the kernel's crash loop:
exit 1); a guest booted with kasan_multi_shot that keeps going after KASAN reports.
And a run that only selects tests its kernel cannot run, which tests nothing and says
so (exit 4).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from labrun import SCENARIOS, lab_run

pytestmark = [pytest.mark.vm, pytest.mark.network]

SUITE = '''
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def warns_in_teardown(agent: Any) -> Iterator[None]:
    yield
    agent.call("sys.kmsg_write", level=4,
               text="WARNING: CPU: 1 PID: 77 at fs/aio.c:1234 io_destroy+0x10/0x20")


def test_1_teardown_splat(agent: Any, warns_in_teardown: None) -> None:
    assert agent.errno_of("aio.destroy", ctx=0) == "EINVAL"


def test_2_op_raises(agent: Any) -> None:
    agent.call("sys.kmsg_write", text=5)  # the op raises AttributeError in the guest


def test_3_clean(agent: Any) -> None:
    assert agent.call("agent.ping") == "pong"


def test_4_panic(agent: Any) -> None:
    agent.call("sys.write_text", path="/proc/sysrq-trigger", text="c")


def test_5_panic_again(agent: Any) -> None:
    agent.call("sys.write_text", path="/proc/sysrq-trigger", text="c")


def test_6_never_reached(agent: Any) -> None:
    assert agent.call("agent.ping") == "pong"


def test_7_never_reached(agent: Any) -> None:
    assert agent.call("agent.ping") == "pong"
'''


def test_teardown_splat_op_error_and_a_run_cut_short(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_verdicts.py").write_text(textwrap.dedent(SUITE))
    run = lab_run(tmp_path, "--suite", str(suite), "--", "--lab-max-reboots", "1")
    recs = run.by_name()
    verdicts = {name: r["verdict"] for name, r in recs.items()}
    assert verdicts == {
        "test_1_teardown_splat": "FAIL", "test_2_op_raises": "FAIL", "test_3_clean": "PASS",
        "test_4_panic": "CRASH", "test_5_panic_again": "CRASH",
        "test_6_never_reached": "NOTRUN", "test_7_never_reached": "NOTRUN",
    }, run.out[-4000:]
    # The reboot limit stopped the run (said in the summary), but the kernel failed tests
    # before it: that is the run's story, exit 1 (was 3, "the machinery failed").
    assert run.returncode == 1, run.out[-3000:]
    assert "exit 1: a test failed (2 CRASH, 2 FAIL, 2 NOTRUN, 0 INCONCLUSIVE)" in run.out
    assert "the run was cut short (2 tests not run)" in run.out
    assert "crash loop of the kernel" in recs["test_6_never_reached"]["reason"]
    # The splat came in the fixture's teardown, and is the test's, with its excerpt.
    splat = recs["test_1_teardown_splat"]
    assert [s["title"] for s in splat["splats"]] == ["WARNING in io_destroy"]
    assert "kernel splat during the test" in splat["reason"]
    # A guest op's exception is the test's failure, with the guest's traceback ...
    raised = recs["test_2_op_raises"]
    assert "AttributeError" in raised["reason"]
    assert "Traceback" in raised["data"]["guest_traceback"]
    # ... and the guest was kept: the clean test ran on the first boot, no other.
    consoles = sorted(p.name for p in run.run_dir.glob("console-*.log"))
    assert len(consoles) == 2, consoles  # the first boot, one replacement after a panic
    boots = [json.loads(x) for x in (run.run_dir / "phases.jsonl").read_text().splitlines()
             if json.loads(x)["phase"] == "boot"]
    assert len(boots) == 2


def test_a_kernel_that_panics_while_booting_is_a_crash(tmp_path: Path) -> None:
    run = lab_run(tmp_path, "--suite", str(SCENARIOS / "aio" / "test_io_destroy.py"),
                  "--", "--lab-append", "kernel_lab.crash_at_boot")
    recs = run.records()
    assert run.returncode == 1, run.out[-3000:]
    assert recs and {r["verdict"] for r in recs} == {"CRASH"}
    for r in recs:
        assert "crashed during boot" in r["reason"]
        assert r["splats"][0]["title"] == "kernel panic: sysrq triggered crash"
        assert "sysrq" in r["excerpt"].lower()


def test_a_run_that_only_skips_tested_nothing(tmp_path: Path) -> None:
    # debian:7.2 has AIO and io_uring: every enosys test is not applicable there.
    run = lab_run(tmp_path, "--suite", str(SCENARIOS / "enosys"))
    recs = run.records()
    assert run.returncode == 4, run.out[-3000:]
    assert recs and {r["verdict"] for r in recs} == {"SKIP"}
    assert "nothing was tested" in run.out
    summary = json.loads((run.run_dir / "summary.json").read_text())
    assert summary["exit_code"] == 4
    assert sum(summary["skip_reasons"].values()) == len(recs)


# A KASAN report as mm/kasan/report.c prints it, written to the kernel log by the agent:
# the same path through the window, the splat parser and the replacement policy as a
# debug kernel's own report (debian:7.2 has no KASAN; building a debug kernel with a
# real use-after-free costs a cold build).
KASAN_SUITE = '''
from typing import Any

REPORT = [
    "==================================================================",
    "BUG: KASAN: slab-use-after-free in aio_complete_rw+0x4a/0x2b0",
    "Read of size 8 at addr ffff88800a3c61d8 by task kworker/1:2/61",
    "",
    "CPU: 1 UID: 0 PID: 61 Comm: kworker/1:2 Not tainted 7.2.13-lab #1 PREEMPT(voluntary)",
    "Call Trace:",
    " <TASK>",
    " dump_stack_lvl+0x5d/0x80",
    " print_report+0xce/0x660",
    " kasan_report+0xd6/0x110",
    " aio_complete_rw+0x4a/0x2b0",
    " blkdev_bio_end_io_async+0x8d/0xd0",
    " process_one_work+0x17e/0x330",
    " </TASK>",
    "==================================================================",
    "Disabling lock debugging due to kernel taint",
]


def _use_after_free(agent: Any) -> None:
    for line in REPORT:
        agent.call("sys.kmsg_write", level=3, text=line)


def test_1_hits_the_bug(agent: Any) -> None:
    _use_after_free(agent)


def test_2_clean(agent: Any) -> None:
    assert agent.call("agent.ping") == "pong"


def test_3_hits_it_again(agent: Any) -> None:
    _use_after_free(agent)


def test_4_clean(agent: Any) -> None:
    assert agent.call("agent.ping") == "pong"
'''


def test_kasan_multi_shot_keeps_the_guest_and_every_hit_fails(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_kasan.py").write_text(textwrap.dedent(KASAN_SUITE))
    run = lab_run(tmp_path, "--append", "kasan_multi_shot", "--suite", str(suite))
    recs = run.by_name()
    assert {n: r["verdict"] for n, r in recs.items()} == {
        "test_1_hits_the_bug": "FAIL", "test_2_clean": "PASS",
        "test_3_hits_it_again": "FAIL", "test_4_clean": "PASS"}, run.out[-4000:]
    assert run.returncode == 1, run.out[-3000:]
    title = "KASAN: slab-use-after-free Read in aio_complete_rw"
    assert [s["title"] for s in recs["test_3_hits_it_again"]["splats"]] == [title]
    # One boot: the guest was kept after each report; what stayed off is said.
    consoles = sorted(p.name for p in run.run_dir.glob("console-*.log"))
    assert len(consoles) == 1, consoles
    assert "LOCKDEP off since " in recs["test_2_clean"]["data"]["detectors_off"]
    # One bug, two tests: in the closing lines, summary.json and the report.
    assert f"  - {title}: 2 tests on debian:7.2" in run.out
    summary = json.loads((run.run_dir / "summary.json").read_text())
    assert [(b["title"], b["n"]) for b in summary["bugs"]] == [(title, 2)]
    assert title in (run.run_dir / "report.html").read_text()
