"""Fixtures for the race suites: agent ops only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from lab.vm.agent import Agent
from scenarios.races.params import POWER_P, Floor, power

AIO_NR = "/proc/sys/fs/aio-nr"
MARGIN_S = 120.0
# A clock coarser than this cannot order syscalls that take microseconds: with it
# no overlap is measurable (guest/areas/race/race_clock.h picks the finest it trusts).
CLOCK_RES_LIMIT_NS = 100_000


@pytest.fixture
def aio_nr(agent: Agent) -> Callable[[], int]:
    """Read the system-wide count of AIO events reserved by io_setup."""
    def read() -> int:
        return int(agent.call("sys.read_text", path=AIO_NR))
    return read


@pytest.fixture
def run_loop(agent: Agent, record: Any) -> Callable[..., dict[str, Any]]:
    """Run one race.* op bounded by ``seconds``; record its counts and timings.

    The call timeout is the loop's own bound plus a margin: a loop still
    running then is stuck in the kernel, and the timeout makes the test a HANG.
    The margin covers one NVMe command timeout and controller reset (30 s +
    30 s in the guest's driver; seen once on 7.2 under TCG, io_destroy then
    waited 61 s, correctly), so that is not mistaken for a hang.
    """
    def run(op: str, *, seconds: float, **args: Any) -> dict[str, Any]:
        result: dict[str, Any] = agent.call(op, seconds=seconds, call_timeout=seconds + MARGIN_S,
                                            **args)
        record("race", result)
        return result
    return run


@pytest.fixture
def raced(record: Any, inconclusive: Any) -> Callable[[dict[str, Any], Floor], None]:
    """Judge whether a loop raced: below ``floor`` the test is INCONCLUSIVE, never PASS.

    The overlap is the loop's own measurement (guest/areas/race/race.h): rounds in
    which the racing calls were in the kernel at the same time, by
    CLOCK_MONOTONIC reads around each call.  The record also carries the run's
    detection power (params.power), whatever the verdict.  A failed check stays a FAIL.
    """
    def check(got: dict[str, Any], floor: Floor) -> None:
        rounds, overlapped = got["overlap_rounds"], got["overlapped"]
        rate = overlapped / rounds if rounds else 0.0
        record("overlap", {"rounds": rounds, "overlapped": overlapped, "rate": round(rate, 4),
                           "calls": got["overlap_calls"], "any": got["any_overlap"],
                           "clock": "tsc" if got["clock_tsc"] else "monotonic",
                           "clock_ns": got["clock_ns"], "clock_res_ns": got["clock_res_ns"],
                           "opts": got["opts"], "floor_rate": floor.rate,
                           "floor_rounds": floor.rounds,
                           "power": round(power(overlapped), 4), "power_p": POWER_P})
        if got["clock_res_ns"] > CLOCK_RES_LIMIT_NS:
            inconclusive(f"the clock moves in {got['clock_res_ns'] / 1000:.0f} us steps here: "
                         "too coarse to tell whether the racing calls overlapped")
        elif overlapped < floor.rounds or rate < floor.rate:
            inconclusive(f"the racing calls overlapped in {overlapped} of {rounds} rounds "
                         f"({rate:.1%}); deciding needs at least {floor.rounds} and "
                         f"{floor.rate * 100:g}%: {floor.why}")
    return check
