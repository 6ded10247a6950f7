"""io_cancel claims, one per test (see claims.py)."""

from __future__ import annotations

from typing import Any

import pytest

from lab.vm.agent import Agent
from scenarios.catalogue import DEVIATIONS


def _poll(fd: int) -> dict[str, Any]:
    return {"opcode": "POLL", "fd": fd, "events": ["POLLIN"]}


@pytest.mark.claim("io_cancel.poll_pending")
def test_cancel_pending_poll_is_einprogress(agent: Agent, ctx: int, pipe: list[int],
                                            deviation: Any) -> None:
    iocb = agent.call("aio.submit", ctx=ctx, iocbs=[_poll(pipe[0])])["iocbs"][0]
    assert agent.call("aio.getevents", ctx=ctx, min_nr=0, nr=1, timeout_ms=0) == []
    assert agent.errno_of("aio.cancel", ctx=ctx, iocb=iocb) == "EINPROGRESS"
    events = agent.call("aio.getevents", ctx=ctx, min_nr=1, nr=1, timeout_ms=10_000)
    assert [(e["iocb"], e["res"]) for e in events] == [(iocb, 0)]
    deviation(DEVIATIONS["io_cancel.poll_pending"])


@pytest.mark.claim("io_cancel.completed")
def test_cancel_completed_is_einval(agent: Agent, ctx: int, pipe: list[int],
                                    deviation: Any) -> None:
    agent.call("fs.write", fd=pipe[1], data_hex="2a")  # the poll completes at once
    iocb = agent.call("aio.submit", ctx=ctx, iocbs=[_poll(pipe[0])])["iocbs"][0]
    events = agent.call("aio.getevents", ctx=ctx, min_nr=1, nr=1, timeout_ms=10_000)
    assert [e["iocb"] for e in events] == [iocb]
    assert agent.errno_of("aio.cancel", ctx=ctx, iocb=iocb) == "EINVAL"
    deviation(DEVIATIONS["io_cancel.completed"])


@pytest.mark.claim("io_cancel.never_submitted")
def test_cancel_never_submitted_is_einval(agent: Agent, ctx: int, pipe: list[int],
                                          deviation: Any) -> None:
    # io_submit fails on the bad fd before taking the iocb, so aio_key keeps its value.
    bad = {"opcode": "POLL", "fd": 9999, "events": ["POLLIN"], "key": 0x5A5A}
    assert agent.errno_of("aio.submit", ctx=ctx, iocbs=[bad]) == "EBADF"
    iocb = agent.call("aio.last_iocbs")[0]
    assert agent.call("aio.iocb", id=iocb)["key"] == 0x5A5A
    assert agent.errno_of("aio.cancel", ctx=ctx, iocb=iocb) == "EINVAL"
    deviation(DEVIATIONS["io_cancel.never_submitted"])


@pytest.mark.claim("io_cancel.null_iocb")
def test_cancel_null_iocb_is_efault(agent: Agent, ctx: int) -> None:
    assert agent.errno_of("aio.cancel", ctx=ctx, iocb="null") == "EFAULT"
