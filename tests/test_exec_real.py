"""`lab exec` on real guests: a C program across two kernels (PASS on one, exit 3 = FAIL on
the other), a script that panics the kernel (CRASH with the panic's title), one that
sleeps past --timeout (HANG, the blocked tasks dumped).  Each cell is one boot of a
Debian kernel from the shared cache (~20-40 s under TCG)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lab.paths import cache_root

pytestmark = [pytest.mark.vm, pytest.mark.network]
REPO = Path(__file__).resolve().parents[1]


def lab_exec(tmp_path: Path, *args: str) -> tuple[int, str, list[dict[str, Any]], Path]:
    res = subprocess.run([sys.executable, "-m", "lab.cli", "exec", "--results",
                          str(tmp_path / "results"), "--cache", str(cache_root()), *args],
                         capture_output=True, text=True, timeout=900, cwd=REPO)
    out = res.stdout + res.stderr
    runs = sorted((tmp_path / "results").glob("*"))
    assert len(runs) == 1, out[-3000:]
    records = [json.loads(ln) for ln in (runs[0] / "results.jsonl").read_text().splitlines()]
    return res.returncode, out, records, runs[0]


def test_a_c_program_passes_on_one_kernel_and_its_exit_3_fails_on_the_other(
        tmp_path: Path) -> None:
    src = tmp_path / "repro.c"
    src.write_text(r"""
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
int main(int argc, char **argv) {
    struct utsname u;
    uname(&u);
    printf("release %s arg %s\n", u.release, argc > 1 ? argv[1] : "-");
    return strncmp(u.release, "6.1.", 4) == 0 ? 3 : 0;
}
""")
    code, out, records, run_dir = lab_exec(tmp_path, "--kernel", "debian:7.2", "--kernel",
                                           "debian:6.1", "--", str(src), "one")
    assert code == 1, out[-5000:]
    by_cell = {r["cell"]: r for r in records}
    assert set(by_cell) == {"debian:7.2", "debian:6.1"}, out[-3000:]
    passed, failed = by_cell["debian:7.2"], by_cell["debian:6.1"]
    assert passed["verdict"] == "PASS" and passed["test"] == "exec::repro.c", passed
    assert failed["verdict"] == "FAIL" and failed["reason"] == "exit 3", failed
    assert failed["data"]["exit_status"] == 3 and passed["data"]["exit_status"] == 0
    assert "release 6.1." in failed["excerpt"] and "arg one" in failed["excerpt"]
    assert len(passed["data"]["program_sha256"]) == 64
    # The output reached the terminal and each cell's log; the binary was built into the run.
    assert "release 7.2." in out and "release 6.1." in out
    assert "release 7.2." in (run_dir / passed["data"]["output_log"]).read_text()
    assert (run_dir / "repro").is_file()
    assert "[debian:6.1] FAIL exec::repro.c" in out
    assert json.loads((run_dir / "summary.json").read_text())["counts"]["FAIL"] == 1


@pytest.mark.parametrize("dump", ["off", "kdump-zlib"])
def test_a_program_that_panics_the_kernel_is_a_crash_with_the_panics_title(
        tmp_path: Path, dump: str) -> None:
    """Without a dump QEMU ends with the panic (panic=-1) and the channel with it; with
    one the kernel gets panic=0, QEMU and the channel stay, and the console's panic must
    end the wait: a CRASH long before --timeout, and the dump in the record."""
    script = tmp_path / "panic.sh"
    # The pause lets sshd send the line before the kernel dies (with panic=-1 QEMU ends
    # at once, and what the guest had not sent yet is gone).
    script.write_text("#!/bin/sh\necho about to panic\nsleep 2\necho c > /proc/sysrq-trigger\n"
                      "sleep 30\n")
    code, out, records, run_dir = lab_exec(tmp_path, "--kernel", "debian:7.2", "--dump", dump,
                                           "--timeout", "600", "--", str(script))
    assert code == 1, out[-5000:]
    (rec,) = records
    assert rec["verdict"] == "CRASH", rec
    assert "sysrq triggered crash" in rec["reason"], rec["reason"]
    assert rec["splats"][0]["title"] == "kernel panic: sysrq triggered crash"
    assert rec["data"]["exit_status"] is None
    assert "about to panic" in out
    assert rec["duration"] < 300, rec["duration"]
    if dump == "off":
        assert "vmcore" not in rec["data"], rec["data"]
    else:
        assert (run_dir / Path(rec["data"]["vmcore"]).name).stat().st_size > 1 << 20, rec


def test_a_program_past_its_timeout_is_a_hang_with_the_blocked_tasks(tmp_path: Path) -> None:
    script = tmp_path / "sleeper.sh"
    script.write_text("#!/bin/sh\nsleep 120\n")
    code, out, records, _ = lab_exec(tmp_path, "--kernel", "debian:7.2", "--timeout", "5",
                                     "--", str(script))
    assert code == 1, out[-5000:]
    (rec,) = records
    assert rec["verdict"] == "HANG", rec
    assert rec["reason"] == "HANG: the program ran past --timeout 5 s", rec["reason"]
    assert rec["data"]["blocked_tasks"].startswith("sysrq: Show Blocked State"), rec["data"]
    assert 5 <= rec["duration"] < 30
