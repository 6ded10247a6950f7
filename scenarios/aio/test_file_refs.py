"""File references on io_submit's error paths and of pending POLLs, one claim per test.

A pipe tells whether its read end's file is still alive: once every reference to it is
gone, a write to the other end fails with EPIPE (the agent ignores SIGPIPE, as Python
does).  Each test closes the read end's fd itself, so only a reference the kernel
holds can keep the reader alive.
"""

from __future__ import annotations

from typing import Any

import pytest

from lab.vm.agent import Agent
from scenarios.aio.conftest import poll, wait_epipe

# POLLOUT on a read end never fires (pipe_poll reports POLLOUT only to writers), and
# POLLIN stays out of the mask, so writes to the pipe leave the POLL pending.
NEVER = ["POLLOUT"]


@pytest.mark.claim("io_submit.fref_bad_opcode")
def test_bad_opcode_keeps_no_file_reference(agent: Agent, ctx: int, pipe: list[int],
                                            record: Any) -> None:
    r, w = pipe
    bad = {"opcode": 0x7F, "fd": r}
    assert agent.errno_of("aio.submit", ctx=ctx, iocbs=[bad]) == "EINVAL"
    agent.call("fs.close", fd=r)
    got = wait_epipe(agent, w)
    record("epipe", got)
    assert got["epipe"], "the rejected iocb's file is still referenced"


@pytest.mark.claim("io_submit.fref_bad_resfd")
def test_bad_resfd_keeps_no_file_reference(agent: Agent, ctx: int, pipe: list[int],
                                           scratch: int, record: Any) -> None:
    r, w = pipe
    # The iocb's own file (the pipe's read end) is taken first, then the resfd refused.
    bad = poll(r, flags=["RESFD"], resfd=scratch)
    assert agent.errno_of("aio.submit", ctx=ctx, iocbs=[bad]) == "EINVAL"
    agent.call("fs.close", fd=r)
    got = wait_epipe(agent, w)
    record("epipe", got)
    assert got["epipe"], "the rejected iocb's file is still referenced"


@pytest.mark.claim("io_submit.fref_poll_pending")
def test_pending_poll_keeps_its_file(agent: Agent, ctx: int, pipe: list[int]) -> None:
    r, w = pipe
    assert agent.call("aio.submit", ctx=ctx, iocbs=[poll(r, NEVER)])["submitted"] == 1
    agent.call("fs.close", fd=r)
    # The POLL's reference keeps a reader: writes succeed (the pipe has room) and do not
    # complete the POLL.
    for _ in range(3):
        assert agent.call("fs.write", fd=w, data_hex="2a") == 1
    assert agent.call("aio.getevents", ctx=ctx, min_nr=0, nr=1, timeout_ms=200) == []


@pytest.mark.claim("io_destroy.fref_poll_cancelled")
def test_poll_cancelled_by_destroy_releases_its_file(agent: Agent, pipe: list[int],
                                                     record: Any) -> None:
    r, w = pipe
    handle = agent.call("aio.setup", nr_events=4)
    assert agent.call("aio.submit", ctx=handle, iocbs=[poll(r, NEVER)])["submitted"] == 1
    agent.call("fs.close", fd=r)
    assert agent.call("fs.write", fd=w, data_hex="2a") == 1  # still held by the POLL
    agent.call("aio.destroy", ctx=handle, call_timeout=60)
    got = wait_epipe(agent, w)
    record("epipe", got)
    assert got["epipe"], "the cancelled POLL's file is still referenced after io_destroy"
