"""io_destroy's edge cases, one claim per test (the basic cases are in test_io_destroy.py)."""

from __future__ import annotations

from typing import Any

import pytest

from lab.vm.agent import Agent
from scenarios.catalogue import DEVIATIONS

NEVER_MAPPED = 0x7F0000DEAD000
GETEVENTS_MS = 30_000


@pytest.mark.claim("io_destroy.unmapped_ctx")
def test_unmapped_ctx_is_einval_not_efault(agent: Agent, deviation: Any) -> None:
    assert agent.call("mem.mapping", addr=NEVER_MAPPED) is None
    assert agent.errno_of("aio.destroy", ctx=NEVER_MAPPED) == "EINVAL"
    deviation(DEVIATIONS["io_destroy.unmapped_ctx"])


@pytest.mark.claim("io_destroy.ring_id_corrupt")
def test_corrupted_ring_id_is_einval_until_restored(agent: Agent, record: Any) -> None:
    handle = agent.call("aio.setup", nr_events=4)
    real = agent.call("aio.ring", ctx=handle)["id"]
    try:
        for wrong in (real + 1, 0xFFFF_FFFF):
            agent.call("aio.ring_write", ctx=handle, field="id", value=wrong)
            assert agent.errno_of("aio.destroy", ctx=handle) == "EINVAL", wrong
    finally:
        agent.call("aio.ring_write", ctx=handle, field="id", value=real)
    record("ring_id", real)
    assert agent.errno_of("aio.destroy", ctx=handle) is None


@pytest.mark.claim("io_destroy.unmaps_ring")
def test_ring_unmapped_after_destroy(agent: Agent, record: Any) -> None:
    handle = agent.call("aio.setup", nr_events=4)
    mapping = agent.call("mem.mapping", addr=handle)
    record("mapping", mapping)
    assert mapping is not None and mapping["start"] == handle and "aio" in mapping["path"]
    agent.call("aio.destroy", ctx=handle)
    assert agent.call("mem.mapping", addr=handle) is None


@pytest.mark.claim("io_destroy.wakes_getevents")
def test_destroy_wakes_blocked_getevents(agent: Agent, record: Any) -> None:
    handle = agent.call("aio.setup", nr_events=4)
    t = agent.call("thread.start", op="aio.getevents",
                   args={"ctx": handle, "min_nr": 1, "nr": 1, "timeout_ms": GETEVENTS_MS})
    blocked = agent.call("thread.wait_blocked", thread=t, syscall="io_getevents", states=["S"])
    agent.call("aio.destroy", ctx=handle)
    out = agent.call("thread.join", thread=t, timeout_ms=GETEVENTS_MS + 10_000,
                     call_timeout=GETEVENTS_MS / 1000 + 60)
    record("getevents", {"blocked": blocked, "join": out})
    assert out.get("errno") == "EINVAL", out
    # Woken by the destroy, long before its own timeout would have ended it.
    assert out["elapsed_ns"] < GETEVENTS_MS * 1_000_000 / 2, out
