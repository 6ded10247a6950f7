"""The host's CPU slots (lab.vm.slots): real flocks, held by real processes."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from lab.errors import UserError
from lab.run.guard import after_wait
from lab.run.watch import Findings, Mark, assess
from lab.vm import slots

HOLDER = """
import sys, time
from pathlib import Path
from lab.vm.slots import CpuSlots
with CpuSlots(int(sys.argv[2]), Path(sys.argv[1])).hold("holder") as waited:
    print(f"held {waited:.2f}", flush=True)
    time.sleep(float(sys.argv[3]))
"""


def _holder(directory: Path, count: int, seconds: float) -> subprocess.Popen[str]:
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory), str(count), str(seconds)],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    assert p.stdout.readline().startswith("held")  # it holds a slot now
    return p


def test_count_is_cores_over_vcpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slots, "host_cores", lambda: 8)
    assert slots.slot_count(2, env={}) == 4
    assert slots.slot_count(3, env={}) == 2
    monkeypatch.setattr(slots, "host_cores", lambda: 2)
    assert slots.slot_count(4, env={}) == 1  # a guest bigger than the host still gets one
    assert slots.slot_count(2, env={slots.SLOTS_ENV: "3"}) == 3
    assert slots.slot_count(2, env={slots.SLOTS_ENV: "0"}) == 0


def test_a_bad_count_is_a_user_error() -> None:
    with pytest.raises(UserError, match=r"KERNEL_LAB_CPU_SLOTS='two' is not a count"):
        slots.configured({slots.SLOTS_ENV: "two"})
    with pytest.raises(UserError):
        slots.configured({slots.SLOTS_ENV: "-1"})


def test_a_taken_slot_is_waited_for(tmp_path: Path) -> None:
    holder = _holder(tmp_path, 1, 1.5)
    with slots.CpuSlots(1, tmp_path).hold("waiter") as waited:
        assert holder.wait(10) == 0  # the holder had let go
    assert 1.0 <= waited <= 10.0


def test_a_free_slot_is_not_waited_for(tmp_path: Path) -> None:
    holder = _holder(tmp_path, 2, 30)
    try:
        with slots.CpuSlots(2, tmp_path).hold("second") as waited:
            assert waited < 0.05
            assert holder.poll() is None  # both held at once
    finally:
        holder.kill()


def test_a_dead_holder_frees_its_slot(tmp_path: Path) -> None:
    holder = _holder(tmp_path, 1, 300)
    holder.kill()
    holder.wait(10)
    with slots.CpuSlots(1, tmp_path).hold("after") as waited:
        assert waited < 1.0


def test_no_limit_and_nesting_never_wait(tmp_path: Path) -> None:
    holder = _holder(tmp_path, 1, 30)
    try:
        with slots.CpuSlots(0, tmp_path).hold("unlimited") as waited:
            assert waited == 0.0
    finally:
        holder.kill()
        holder.wait(10)
    one = slots.CpuSlots(1, tmp_path)
    with one.hold("outer"), one.hold("inner: a reboot inside a held test") as inner:
        assert inner == 0.0  # the process holds the only slot: waiting would never end


def test_a_waiter_gives_up_and_goes_on(tmp_path: Path) -> None:
    holder = _holder(tmp_path, 1, 30)
    try:
        with slots.CpuSlots(1, tmp_path).hold("impatient", max_wait=0.3) as waited:
            assert 0.3 <= waited < 5
    finally:
        holder.kill()
        holder.wait(10)


def test_a_splat_during_the_wait_is_the_windows_early_part() -> None:
    mark = Mark(console_offset=0, seq=10, taint=0, ts_us=5_000_000)
    splat_at = {"seq": 11, "ts_us": 9_000_000, "text": "WARNING: CPU: 1 PID: 7 at fs/aio.c:1 x"}
    found = Findings(records=[splat_at, {"seq": 12, "ts_us": 9_000_001, "text": "Modules:"}])
    assert not assess(found, mark).early  # 4 s into a window without a wait
    waited = after_wait(mark, 4.5)
    assert waited == dataclasses.replace(mark, ts_us=9_500_000)
    assert assess(found, waited).early  # it came while the test waited: maybe the last test's
