"""io_cancel's edge cases, one claim per test (the basic cases are in test_io_cancel.py)."""

from __future__ import annotations

import select
from typing import Any

import pytest

from lab.vm.agent import Agent
from scenarios.aio.conftest import poll

NEVER_CREATED = 0x7F0000DEAD000
SLOW_READS = 8


def _events(agent: Agent, ctx: int, want: int, timeout_ms: int = 60_000) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = agent.call("aio.getevents", ctx=ctx, min_nr=want, nr=want,
                                           timeout_ms=timeout_ms)
    return got


@pytest.mark.claim("io_cancel.direct_io")
def test_inflight_direct_read_cannot_be_cancelled(agent: Agent, slow_reads: Any, record: Any,
                                                  inconclusive: Any) -> None:
    reads = slow_reads(SLOW_READS)
    ids = reads.submit()
    last = ids[-1]  # queued behind the others on the 25-IOPS device
    err = agent.errno_of("aio.cancel", ctx=reads.ctx, iocb=last)
    early = agent.call("aio.getevents", ctx=reads.ctx, min_nr=0, nr=SLOW_READS, timeout_ms=0)
    rest = _events(agent, reads.ctx, SLOW_READS - len(early))
    events = early + rest
    record("cancel", {"errno": err, "completed_before_look": len(early)})
    assert err == "EINVAL"
    # Every read completed with its data, the one io_cancel was asked about included.
    assert sorted(e["iocb"] for e in events) == sorted(ids)
    assert all(e["res"] == 4096 for e in events), events
    if any(e["iocb"] == last for e in early):
        inconclusive("the read had completed before io_cancel looked: not found, "
                     "rather than not cancellable")


@pytest.mark.claim("io_cancel.twice")
def test_cancel_twice_second_is_einval(agent: Agent, ctx: int, pipe: list[int]) -> None:
    iocb = agent.call("aio.submit", ctx=ctx, iocbs=[poll(pipe[0])])["iocbs"][0]
    assert agent.errno_of("aio.cancel", ctx=ctx, iocb=iocb) == "EINPROGRESS"
    assert agent.errno_of("aio.cancel", ctx=ctx, iocb=iocb) == "EINVAL"
    (event,) = _events(agent, ctx, 1, 10_000)
    assert (event["iocb"], event["res"]) == (iocb, 0)
    assert agent.call("aio.getevents", ctx=ctx, min_nr=0, nr=1, timeout_ms=200) == []


@pytest.mark.claim("io_cancel.other_ctx")
def test_cancel_through_another_context(agent: Agent, ctx: int, pipe: list[int]) -> None:
    other = agent.call("aio.setup", nr_events=4)
    iocb = agent.call("aio.submit", ctx=ctx, iocbs=[poll(pipe[0])])["iocbs"][0]
    assert agent.errno_of("aio.cancel", ctx=other, iocb=iocb) == "EINVAL"
    # Still pending in its own context: no event until the pipe has data, then one.
    assert agent.call("aio.getevents", ctx=ctx, min_nr=0, nr=1, timeout_ms=200) == []
    agent.call("fs.write", fd=pipe[1], data_hex="2a")
    (event,) = _events(agent, ctx, 1, 10_000)
    assert event["iocb"] == iocb and event["res"] & select.POLLIN, event
    assert agent.call("aio.getevents", ctx=other, min_nr=0, nr=1, timeout_ms=0) == []


@pytest.mark.claim("io_cancel.result_ignored")
def test_result_argument_is_ignored(agent: Agent, ctx: int, pipe: list[int]) -> None:
    result = agent.call("mem.alloc", size=4096, fill=0xAB)
    a, b = agent.call("aio.submit", ctx=ctx, iocbs=[poll(pipe[0]), poll(pipe[0])])["iocbs"]
    assert agent.errno_of("aio.cancel", ctx=ctx, iocb=a, result=result) == "EINPROGRESS"
    assert agent.call("mem.read", handle=result, length=32) == "ab" * 32  # not written
    # An unwritable result is no error either: the kernel never touches it.
    assert agent.errno_of("aio.cancel", ctx=ctx, iocb=b, result="fault") == "EINPROGRESS"
    events = _events(agent, ctx, 2, 10_000)
    assert sorted((e["iocb"], e["res"]) for e in events) == sorted([(a, 0), (b, 0)])


@pytest.mark.claim("io_cancel.efault_before_ctx")
def test_unreadable_iocb_checked_before_context(agent: Agent, pipe: list[int]) -> None:
    assert agent.errno_of("aio.cancel", ctx=NEVER_CREATED, iocb="fault") == "EFAULT"
    # A readable iocb whose key is KIOCB_KEY, with the same bad context: EINVAL.
    helper = agent.call("aio.setup", nr_events=1)
    iocb = agent.call("aio.submit", ctx=helper, iocbs=[poll(pipe[0])])["iocbs"][0]
    assert agent.errno_of("aio.cancel", ctx=NEVER_CREATED, iocb=iocb) == "EINVAL"
