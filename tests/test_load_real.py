"""The suites on a loaded machine, as a busy CI runner is: two runs at once and a CPU hog.

Under load, emulated NVMe commands take longer; with the driver's hardware
timeouts the guest used to abort them and reset the controller (fio then saw
EINTR after ~62 s).  The lab boots guests with emulation-sized NVMe timeouts
and bounded jobs: both runs must pass the NVMe-heavy suites all the same.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from labrun import SCENARIOS, lab_cmd

from lab.vm.slots import SLOTS_ENV

pytestmark = [pytest.mark.vm, pytest.mark.network]


def test_two_runs_and_a_cpu_hog(tmp_path: Path) -> None:
    uring = sorted(str(p) for p in (SCENARIOS / "uring").glob("test_*.py"))
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    runs = []
    try:
        for i in range(2):
            where = tmp_path / f"run{i}"
            where.mkdir()
            runs.append((where, subprocess.Popen(
                # The uring suite and io_destroy's wait on slow I/O (node ids after `--`
                # select: they replace the suite).
                lab_cmd(where, "--", *uring, str(SCENARIOS / "aio" / "test_io_destroy.py")),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                # The runs do not take turns booting and racing (lab.vm.slots): the
                # load is that of two uncoordinated jobs on one runner.
                cwd=SCENARIOS.parent, env={**os.environ, SLOTS_ENV: "0"})))
        outs = [(where, p.communicate(timeout=1800)[0], p.returncode) for where, p in runs]
    finally:
        hog.kill()
        for _, p in runs:
            p.kill()
    for where, out, rc in outs:
        assert rc == 0, out[-4000:]
        records = next((where / "results").glob("*/results.jsonl")).read_text()
        assert '"verdict": "FAIL"' not in records and '"verdict": "INFRA"' not in records
        assert "fio" in records  # the fio jobs ran (and passed) on both
