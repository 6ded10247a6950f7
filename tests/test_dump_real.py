"""A crash dump of a real guest, read by drgn with Debian's -dbg vmlinux.

The test's own process names itself, panics the kernel (sysrq-c), and the lab, told to
dump (--dump kdump-zlib, so the kernel runs with panic=0 and outlives its panic), learns
of the panic from the console, dumps the paused guest to the run directory and replaces
it.  drgn then opens the dump as a kernel core (the VMCOREINFO note the guest's fw_cfg
driver handed QEMU) and finds the crashed task by the name the test gave it.

The -dbg package is a 1.2 GB download (15.6 s from the registry here) and its vmlinux
takes about 70 s of CPU to unpack; `lab fetch --dbg` does it once, then it is cached.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from labrun import REPO, lab_run

from lab.paths import cache_root

pytestmark = [pytest.mark.vm, pytest.mark.network]

NAME = "lab-dumpee"  # the crashing task's comm (15 characters at most)
SUITE = f'''
from typing import Any


def test_1_panic(agent: Any) -> None:
    # The agent runs each op on its main thread: that thread, renamed, panics the kernel.
    agent.call("sys.write_text", path="/proc/thread-self/comm", text="{NAME}")
    agent.call("sys.write_text", path="/proc/sysrq-trigger", text="c")


def test_2_after_panic(agent: Any) -> None:
    assert agent.errno_of("aio.destroy", ctx=0) == "EINVAL"
'''


def _dbg_vmlinux() -> Path:
    out = subprocess.run([sys.executable, "-m", "lab.cli", "fetch", "--dbg", "debian:7.2",
                          "--cache", str(cache_root())], capture_output=True, text=True,
                         timeout=1800, cwd=REPO, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    line = next(ln for ln in out.stdout.splitlines() if "debug symbols ->" in ln)
    return Path(line.rsplit("-> ", 1)[1])


def test_drgn_reads_the_crashed_task_from_a_dump(tmp_path: Path) -> None:
    import drgn  # the test extra's (pyproject.toml): missing, the test fails
    vmlinux = _dbg_vmlinux()
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_dump.py").write_text(textwrap.dedent(SUITE))
    # A call timeout far past the test's own: a panic seen only when a call times out
    # (or when QEMU exits, which panic=0 stops) would show in the CRASH's duration.
    run = lab_run(tmp_path, "--suite", str(suite), "--dump", "kdump-zlib",
                  "--call-timeout", "900")
    assert run.returncode == 1, run.out[-4000:]
    recs = run.by_name()
    assert {n: r["verdict"] for n, r in recs.items()} == {
        "test_1_panic": "CRASH", "test_2_after_panic": "PASS"}, run.out[-4000:]
    crash = recs["test_1_panic"]
    assert any(s["kind"] == "PANIC" for s in crash["splats"]), crash
    assert crash["duration"] < 120, crash  # the console said it, not a timeout
    vmcore = Path(crash["data"]["vmcore"])
    assert vmcore.parent == run.run_dir and vmcore.name.startswith("vmcore-"), vmcore
    assert vmcore.stat().st_size == crash["data"]["vmcore_bytes"] > 1 << 20
    print(f"kdump-zlib: {crash['data']['vmcore_bytes']} bytes in "
          f"{crash['data']['vmcore_seconds']} s")
    assert "vmcore" not in recs["test_2_after_panic"]["data"]

    prog = drgn.Program()
    prog.set_core_dump(str(vmcore))
    assert prog.flags & drgn.ProgramFlags.IS_LINUX_KERNEL  # VMCOREINFO was in the dump
    prog.load_debug_info([str(vmlinux)], default=False)
    thread = prog.crashed_thread()
    assert thread.object.comm.string_().decode() == NAME
    assert prog["init_uts_ns"].name.release.string_().decode() == crash["kernel"]["release"]


def test_a_boot_panic_under_panic_0_is_seen_on_the_console(tmp_path: Path) -> None:
    # With --dump the kernel outlives its panic (panic=0): the boot must learn of it from
    # the console, not from QEMU's exit (there is none) nor at its timeout (here 900 s).
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_one.py").write_text("def test_one(agent):\n    pass\n")
    started = time.monotonic()
    run = lab_run(tmp_path, "--suite", str(suite), "--dump", "kdump-zlib",
                  "--boot-timeout", "900", "--", "--lab-append", "kernel_lab.crash_at_boot")
    took = time.monotonic() - started
    recs = run.records()
    assert run.returncode == 1, run.out[-3000:]
    assert [r["verdict"] for r in recs] == ["CRASH"], run.out[-3000:]
    assert "crashed during boot" in recs[0]["reason"]
    assert "the kernel panicked: sysrq triggered crash" in recs[0]["reason"]
    assert took < 400, run.out[-3000:]


HANG_SUITE = f'''
from typing import Any


def test_1_call_never_returns(agent: Any) -> None:
    agent.call("sys.write_text", path="/proc/thread-self/comm", text="{NAME}")
    ctx = agent.call("aio.setup", nr_events=1)
    # min_nr=1 on an empty context with no timeout: blocks until the call timeout.
    agent.call("aio.getevents", ctx=ctx, min_nr=1, nr=1, timeout_ms=None, call_timeout=5)
'''


def test_a_hang_is_dumped_as_elf_and_drgn_finds_the_waiting_task(tmp_path: Path) -> None:
    import drgn  # the test extra's (pyproject.toml): missing, the test fails
    from drgn.helpers.linux.pid import for_each_task

    vmlinux = _dbg_vmlinux()
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_hang.py").write_text(textwrap.dedent(HANG_SUITE))
    run = lab_run(tmp_path, "--suite", str(suite), "--dump", "elf")
    (rec,) = run.records()
    assert rec["verdict"] == "HANG", run.out[-4000:]
    vmcore = Path(rec["data"]["vmcore"])
    assert vmcore.suffix == ".elf" and vmcore.stat().st_size >= 2 << 30  # all of it
    print(f"elf: {rec['data']['vmcore_bytes']} bytes in {rec['data']['vmcore_seconds']} s")
    prog = drgn.Program()
    prog.set_core_dump(str(vmcore))
    assert prog.flags & drgn.ProgramFlags.IS_LINUX_KERNEL
    prog.load_debug_info([str(vmlinux)], default=False)
    (task,) = [t for t in for_each_task(prog) if t.comm.string_().decode() == NAME]
    trace = str(prog.stack_trace(task))
    assert "io_getevents" in trace, trace
    vmcore.unlink()  # 2 GiB
