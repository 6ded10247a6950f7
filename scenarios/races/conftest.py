"""Fixtures for the race suites: agent ops only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

AIO_NR = "/proc/sys/fs/aio-nr"
MARGIN_S = 120.0


@pytest.fixture
def aio_nr(agent: Any) -> Callable[[], int]:
    """Read the system-wide count of AIO events reserved by io_setup."""
    def read() -> int:
        return int(agent.call("sys.read_text", path=AIO_NR))
    return read


@pytest.fixture
def run_loop(agent: Any, record: Any) -> Callable[..., dict[str, Any]]:
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
