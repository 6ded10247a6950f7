"""The kernel log between tests, on a real kernel under QEMU: no gap between windows.

One `lab run` of a suite whose module fixtures act after a test's window closed and
before the next one opens (the way deferred work prints): a splat written then is the
previous test's; a guest that dies then makes that test a CRASH (never a silent
reboot); a splat after the last test is read as the guest stops; a splat only on the
console is a finding of the run.  And a test that skipped still has its teardown
judged.  Two boots: the first guest, and the one after the death.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from labrun import lab_run

pytestmark = [pytest.mark.vm, pytest.mark.network]

CONFTEST = '''
from collections.abc import Iterator
from typing import Any

import pytest


def warning(func: str) -> str:
    return f"WARNING: CPU: 1 PID: 77 at fs/aio.c:1234 {func}+0x10/0x20"


@pytest.fixture(scope="module")
def splat_after_the_window(lab_machine: Any) -> Iterator[None]:
    yield  # the module's last test closed its window; the next has not opened one
    lab_machine.agent.call("sys.kmsg_write", level=4, text=warning("free_ioctx"))


@pytest.fixture(scope="module")
def dies_after_the_window(lab_machine: Any) -> Iterator[None]:
    yield
    try:
        lab_machine.agent.call("sys.write_text", path="/proc/sysrq-trigger", text="c",
                               call_timeout=10)
    except Exception:
        pass  # the guest is dead: the next test's guest is a fresh one


@pytest.fixture(scope="module")
def splat_at_the_end(lab_machine: Any) -> Iterator[None]:
    yield
    lab_machine.agent.call("sys.kmsg_write", level=4, text=warning("io_ring_exit_work"))


@pytest.fixture
def warns_in_teardown(agent: Any) -> Iterator[None]:
    yield
    agent.call("sys.kmsg_write", level=4, text=warning("aio_complete"))
'''

FILES = {
    "test_0_skip.py": '''
        import pytest
        def test_skips_then_its_teardown_splats(agent, warns_in_teardown):
            agent.call("agent.ping")
            pytest.skip("not applicable after all")
        ''',
    "test_1_gap.py": '''
        def test_deferred_splat(agent, splat_after_the_window):
            assert agent.call("agent.ping") == "pong"
        ''',
    "test_2_dies.py": '''
        def test_guest_dies_after(agent, dies_after_the_window):
            assert agent.call("agent.ping") == "pong"
        ''',
    "test_3_console.py": '''
        def test_console_only(agent):
            agent.call("sys.write_text", path="/dev/console",
                       text="WARNING: CPU: 0 PID: 5 at mm/slub.c:99 console_only+0x1/0x2\\n")
        ''',
    "test_4_last.py": '''
        def test_last(agent, splat_at_the_end):
            assert agent.call("agent.ping") == "pong"
        ''',
}


def test_what_the_kernel_prints_between_tests_is_judged(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "conftest.py").write_text(CONFTEST)
    for name, text in FILES.items():
        (suite / name).write_text(textwrap.dedent(text))
    run = lab_run(tmp_path, "--suite", str(suite))
    recs = run.by_name()
    got = {name: (r["verdict"], r["reason"]) for name, r in recs.items()}
    verdicts = {name: v for name, (v, _) in got.items()}
    assert verdicts == {
        "test_skips_then_its_teardown_splats": "FAIL", "test_deferred_splat": "FAIL",
        "test_guest_dies_after": "CRASH", "test_console_only": "PASS", "test_last": "FAIL",
    }, (got, run.out[-4000:])
    assert "WARNING in aio_complete" in got["test_skips_then_its_teardown_splats"][1]
    gap = recs["test_deferred_splat"]
    assert gap["reason"] == ("kernel splat after the test's window closed (between "
                             "tests): WARNING in free_ioctx"), gap
    assert gap["data"]["after_test"]["where"] == "between tests"
    dead = recs["test_guest_dies_after"]
    assert "the guest died after the test" in dead["reason"], dead
    assert "sysrq" in dead["excerpt"].lower()
    last = recs["test_last"]
    assert "WARNING in io_ring_exit_work" in last["reason"]
    assert "as the guest was stopped" in last["reason"]
    # The console-only splat: in no window, so a finding of the run, in the summary too.
    findings = [json.loads(x) for x in
                (run.run_dir / "findings.jsonl").read_text().splitlines()]
    assert [f["title"] for f in findings] == ["WARNING in console_only"], findings
    summary = json.loads((run.run_dir / "summary.json").read_text())
    assert [f["title"] for f in summary["findings"]] == ["WARNING in console_only"]
    assert "WARNING in console_only" in run.out
    assert run.returncode == 1
    assert len(list(run.run_dir.glob("console-*.log"))) == 2  # the death was replaced once
