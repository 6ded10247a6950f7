"""A guest that floods its console, on a real kernel under QEMU: a verdict, not a full disk.

One `lab run` with the console cap lowered (KERNEL_LAB_CONSOLE_CAP) of a suite whose
second test writes three times the cap to the guest's console: the console log on the
host stops at the cap's head and, once that guest stops, gets a line saying what was
cut and the console's last bytes; the test is a FAIL naming the cap; the next test runs
on a fresh guest.  The first test reads a command's output past the SSH cap.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from labrun import lab_run

from lab.vm.vmconfig import CONSOLE_CAP_ENV

pytestmark = [pytest.mark.vm, pytest.mark.network]

HEAD, TAIL = 256 << 10, 32 << 10  # a boot prints about 40 KB
LINE = "flood" * 15 + "\n"  # 76 bytes
SUITE = f'''
from typing import Any

import pytest

from lab.errors import InfraError


def test_1_ssh_output_past_its_cap(lab_machine: Any) -> None:
    with pytest.raises(InfraError, match="wrote more than 1048576 bytes to its stdout"):
        lab_machine.vm.ssh.start(["head", "-c", "3000000", "/dev/zero"]).wait(cap=1 << 20)


def test_2_floods_the_console(agent: Any) -> None:
    for _ in range(3):
        agent.call("sys.write_text", path="/dev/console", text={LINE!r} * 3000)


def test_3_a_fresh_guest(agent: Any) -> None:
    assert agent.call("agent.ping") == "pong"
'''
MARKER = re.compile(rb"\[kernel-lab: log cut here: (\d+) bytes in (\d+) lines cut after "
                    rb"the first (\d+) bytes; the last (\d+) bytes follow\]\n")


def test_a_flood_is_cut_in_the_log_and_fails_the_test(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_flood.py").write_text(textwrap.dedent(SUITE))
    run = lab_run(tmp_path, "--suite", str(suite), env={CONSOLE_CAP_ENV: f"{HEAD},{TAIL}"})
    recs = run.by_name()
    assert {n: r["verdict"] for n, r in recs.items()} == {
        "test_1_ssh_output_past_its_cap": "PASS", "test_2_floods_the_console": "FAIL",
        "test_3_a_fresh_guest": "PASS"}, run.out[-4000:]
    flooded = recs["test_2_floods_the_console"]
    assert "the guest flooded its console" in flooded["reason"]
    assert f"cap of {HEAD} bytes" in flooded["reason"]
    assert flooded["data"]["console_flooded"] is True
    first, second = sorted(run.run_dir.glob("console-*.log"), key=lambda p: len(p.name))
    assert "boot2" in second.name and b"log cut here" not in second.read_bytes()
    data = first.read_bytes()
    m = MARKER.search(data)
    assert m is not None, data[-2000:]
    cut, lines, head, kept = map(int, m.groups())
    assert head <= HEAD and kept == TAIL and cut > HEAD and lines > HEAD // len(LINE)
    assert len(data) <= HEAD + TAIL + 4000  # the argv line (QEMU's options), the marker
    # The tail is the console's real end: flood lines (the tty's CR LF), then the window
    # the guest's stop read.
    tail = data[m.end():]
    assert LINE.replace("\n", "\r\n").encode() * 10 in tail
    assert b"kernel-lab: end test_flood.py::test_2_floods_the_console" in tail
