"""Crashes and hangs for real: a panicking kernel, a call that never returns, a hung task.

Each is attributed to the test that caused it, the guest is replaced, and the next
test passes on the fresh guest.  A killed lab leaves no QEMU and a readable record.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from labrun import LabRun, lab_cmd, lab_run

pytestmark = [pytest.mark.vm, pytest.mark.network]

SUITE = '''
from typing import Any


def test_1_before(agent: Any) -> None:
    assert agent.errno_of("aio.destroy", ctx=0) == "EINVAL"


def test_2_panic(agent: Any) -> None:
    agent.call("sys.write_text", path="/proc/sysrq-trigger", text="c")


def test_3_after_panic(agent: Any) -> None:
    assert agent.errno_of("aio.destroy", ctx=0) == "EINVAL"


def test_4_call_never_returns(agent: Any) -> None:
    ctx = agent.call("aio.setup", nr_events=1)
    # min_nr=1 on an empty context with no timeout: blocks until the call timeout.
    agent.call("aio.getevents", ctx=ctx, min_nr=1, nr=1, timeout_ms=None, call_timeout=5)


def test_5_after_hang(agent: Any) -> None:
    assert agent.errno_of("aio.destroy", ctx=0) == "EINVAL"


def test_6_hung_task(agent: Any, nvme: Any) -> None:
    # io_destroy waits uninterruptibly (D state) for slow O_DIRECT reads: with a
    # 1 s hung-task timeout the kernel's detector reports the waiting task.
    agent.call("sys.write_text", path="/proc/sys/kernel/hung_task_timeout_secs", text="1")
    fd = agent.call("fs.open", path=nvme["slow"].ns, flags=["O_RDONLY", "O_DIRECT"])
    bufs = [agent.call("mem.alloc", size=4096) for _ in range(120)]
    ctx = agent.call("aio.setup", nr_events=120)
    agent.call("aio.submit", ctx=ctx, iocbs=[
        {"opcode": "PREAD", "fd": fd, "buf": b, "nbytes": 4096, "offset": i << 20}
        for i, b in enumerate(bufs)])
    agent.call("aio.destroy", ctx=ctx, call_timeout=60)
    agent.call("sys.write_text", path="/proc/sys/kernel/hung_task_timeout_secs", text="120")


def test_7_last(agent: Any) -> None:
    assert agent.errno_of("aio.destroy", ctx=0) == "EINVAL"
'''


def test_crash_hang_and_hung_task_are_attributed_and_recovered(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_crashes.py").write_text(textwrap.dedent(SUITE))
    run = lab_run(tmp_path, "--suite", str(suite))
    out, run_dir = run.out, run.run_dir
    assert run.returncode == 1, out[-4000:]
    recs = run.by_name()
    verdicts = {name: r["verdict"] for name, r in recs.items()}
    assert verdicts == {
        "test_1_before": "PASS", "test_2_panic": "CRASH", "test_3_after_panic": "PASS",
        "test_4_call_never_returns": "HANG", "test_5_after_hang": "PASS",
        "test_6_hung_task": "FAIL", "test_7_last": "PASS",
    }, out[-4000:]
    panic = recs["test_2_panic"]
    assert any(s["kind"] == "PANIC" for s in panic["splats"]), panic
    assert "sysrq" in panic["excerpt"].lower() or "sysrq" in json.dumps(panic["splats"]).lower()
    hang = recs["test_4_call_never_returns"]
    assert "HANG" in hang["reason"] and hang["excerpt"]
    hung = recs["test_6_hung_task"]
    assert [s["kind"] for s in hung["splats"]][:1] == ["HUNG_TASK"], hung
    # Attribution: no other test carries a splat.
    assert all(not r["splats"] for n, r in recs.items()
               if n not in ("test_2_panic", "test_4_call_never_returns", "test_6_hung_task"))
    # One console per boot: the first, one after the panic, one after the hang, and one
    # after the hung-task report (the detector has spoken; later tests get a fresh guest).
    assert len(list(run_dir.glob("console-*.log"))) == 4
    phases = [json.loads(line)["phase"] for line in (run_dir / "phases.jsonl").read_text()
              .splitlines()]
    assert phases.count("boot") == 4


def _qemu_pids(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "qemu-system" in cmd and marker in cmd:
                pids.append(int(entry.name))
    return pids


def test_killed_lab_leaves_no_qemu_and_a_readable_record(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_slow.py").write_text(textwrap.dedent('''
        import time
        from typing import Any

        def test_a(agent: Any) -> None:
            assert agent.call("agent.ping") == "pong"

        def test_b(agent: Any) -> None:
            time.sleep(300)
    '''))
    results = tmp_path / "results"
    lab = subprocess.Popen(lab_cmd(tmp_path, "--suite", str(suite)), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    jsonl = None
    while time.monotonic() < deadline:
        found = list(results.glob("*/results.jsonl"))
        if found and found[0].read_text().strip():
            jsonl = found[0]
            break
        time.sleep(0.5)
    assert jsonl is not None, "the first record never appeared"
    marker = str(jsonl.parent)
    assert _qemu_pids(marker), "QEMU should be running test_b"
    os.kill(lab.pid, signal.SIGKILL)
    lab.wait()
    deadline = time.monotonic() + 15
    while _qemu_pids(marker) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _qemu_pids(marker) == []
    recs = LabRun(0, "", jsonl.parent).records()
    assert [(r["test"].split("::")[1].split("[")[0], r["verdict"]) for r in recs] == [
        ("test_a", "PASS")]
