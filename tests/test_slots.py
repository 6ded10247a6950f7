"""The host's CPU slots (lab.vm.slots): real flocks, held by real processes."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
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
print("ready", flush=True)
with CpuSlots(int(sys.argv[2]), Path(sys.argv[1])).hold("holder") as wait:
    print(f"held {wait.seconds:.2f} {wait.held}", flush=True)
    time.sleep(float(sys.argv[3]))
"""


def _holder(directory: Path, count: int, seconds: float) -> subprocess.Popen[str]:
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory), str(count), str(seconds)],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline() == "ready\n"
    assert p.stdout.readline().endswith("True\n")  # it holds a slot now
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
    try:
        with slots.CpuSlots(1, tmp_path).hold("waiter") as wait:
            assert holder.wait(10) == 0  # the holder had let go
    finally:
        holder.kill()
    assert wait.held and 1.0 <= wait.seconds <= 10.0


def test_a_free_slot_is_not_waited_for(tmp_path: Path) -> None:
    holder = _holder(tmp_path, 2, 30)
    try:
        with slots.CpuSlots(2, tmp_path).hold("second") as wait:
            assert wait.held and wait.seconds < 0.5
            assert holder.poll() is None  # both held at once
    finally:
        holder.kill()


def test_a_dead_holder_frees_its_slot(tmp_path: Path) -> None:
    holder = _holder(tmp_path, 1, 300)
    holder.kill()
    holder.wait(10)
    with slots.CpuSlots(1, tmp_path).hold("after") as wait:
        assert wait.held and wait.seconds < 1.0


def test_no_limit_and_nesting_never_wait(tmp_path: Path) -> None:
    holder = _holder(tmp_path, 1, 30)
    try:
        with slots.CpuSlots(0, tmp_path).hold("unlimited") as wait:
            assert wait == slots.Wait(0.0, held=False)
    finally:
        holder.kill()
        holder.wait(10)
    one = slots.CpuSlots(1, tmp_path)
    with one.hold("outer") as outer, one.hold("inner: a reboot inside a held test") as inner:
        assert outer.held and not inner.held  # the only slot is this process's: no wait
        assert inner.seconds == 0.0


def test_a_waiter_gives_up_and_goes_on(tmp_path: Path) -> None:
    holder = _holder(tmp_path, 1, 30)
    try:
        with slots.CpuSlots(1, tmp_path).hold("impatient", max_wait=0.3) as wait:
            assert not wait.held and 0.3 <= wait.seconds < 5
    finally:
        holder.kill()
        holder.wait(10)


def test_unusable_slots_are_gone_without(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with slots.CpuSlots(1, blocker / "slots").hold("no dir") as wait:  # cannot be made
        assert not wait.held and wait.seconds < 1.0


def test_a_slot_just_let_go_goes_to_the_waiter(tmp_path: Path) -> None:
    """A waiter polling every POLL_S gets a slot that its holder lets go and wants back."""
    first = slots.CpuSlots(1, tmp_path)
    with first.hold("first"):
        waiter = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path), "1", "1"],
                                  stdout=subprocess.PIPE, text=True)
        assert waiter.stdout is not None and waiter.stdout.readline() == "ready\n"
        time.sleep(0.5)  # the waiter is polling now
    with first.hold("again") as again:  # it comes back in a round trip: the waiter is first
        pass
    assert again.held and again.seconds >= 0.5  # it waited for the waiter's hold (1 s)
    assert waiter.wait(10) == 0


def test_a_splat_during_the_wait_is_the_windows_early_part() -> None:
    mark = Mark(console_offset=0, seq=10, taint=0, ts_us=5_000_000)
    splat_at = {"seq": 11, "ts_us": 9_000_000, "text": "WARNING: CPU: 1 PID: 7 at fs/aio.c:1 x"}
    found = Findings(records=[splat_at, {"seq": 12, "ts_us": 9_000_001, "text": "Modules:"}])
    assert not assess(found, mark).early  # 4 s into a window without a wait
    waited = after_wait(mark, 4.5)
    assert waited == dataclasses.replace(mark, ts_us=9_500_000, opened_us=5_000_000)
    assert assess(found, waited).early  # it came while the test waited: maybe the last test's
    unknown = dataclasses.replace(mark, ts_us=0)
    assert after_wait(unknown, 4.5) == unknown  # an unknown begin time stays unknown
