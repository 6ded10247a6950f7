"""The kernel log of a test's window is whole, on a real kernel under QEMU: a test that
logs as much as a race loop under kasan_multi_shot can (a report of ~90 lines in each of
300 rounds) loses no record, and a window that did lose some would say so."""

from __future__ import annotations

from pathlib import Path

import pytest
from labrun import lab_run

pytestmark = [pytest.mark.vm, pytest.mark.network]

# Debian's kernels keep 2^18 bytes of log and 2^13 records (CONFIG_LOG_BUF_SHIFT=18):
# this many records overrun that several times over between a window's mark and its close.
RECORDS = 30_000

SUITE = r"""
from typing import Any

FLOOD = (
    "import os\n"
    "fd = os.open('/dev/kmsg', os.O_WRONLY)\n"
    "for n in range(RECORDS):\n"
    "    os.write(fd, b'<7>kernel-lab flood %d\\n' % n)\n"
)


def test_floods_the_log(agent: Any, vm: Any) -> None:
    # One open file without /dev/kmsg's per-file rate limit; level 7 stays off the
    # console (the serial line would take minutes under TCG).
    # The sysctl wants the newline (devkmsg_sysctl_set_loglvl(), kernel/printk/printk.c).
    agent.call("sys.write_text", path="/proc/sys/kernel/printk_devkmsg", text="on\n")
    done = vm.ssh.run(["python3", "-c", FLOOD.replace("RECORDS", "REPLACED")], timeout=600)
    assert done.status == 0, done.stderr
"""


def test_a_window_with_a_flood_in_it_is_whole(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_flood.py").write_text(SUITE.replace("REPLACED", str(RECORDS)))
    run = lab_run(tmp_path, "--suite", str(suite))
    (rec,) = run.records()
    assert rec["verdict"] == "PASS", run.out[-3000:]
    assert "kmsg_lost" not in rec["data"], rec["data"]
