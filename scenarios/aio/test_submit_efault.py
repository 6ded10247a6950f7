"""io_submit's EFAULT paths, one claim per test: which bad memory fails the syscall, and
which is accepted and fails the request instead."""

from __future__ import annotations

import errno
from typing import Any

import pytest

from lab.vm.agent import Agent
from scenarios.catalogue import DEVIATIONS

# Below mmap_min_addr (64 KiB by default): inside the user range, never mapped.
UNMAPPED_USER = 0x1000
KERNEL_ADDR = 0xFFFF_8880_0000_0000  # the direct map on x86-64: outside the user range


def _pread(fd: int, **extra: Any) -> dict[str, Any]:
    return {"opcode": "PREAD", "fd": fd, "nbytes": 4096, "offset": 0, **extra}


@pytest.mark.claim("io_submit.iocb_unreadable")
def test_unreadable_iocb(agent: Agent, ctx: int, scratch: int, buf: int) -> None:
    good = _pread(scratch, buf=buf)
    assert agent.errno_of("aio.submit", ctx=ctx, iocbs=["fault"]) == "EFAULT"
    # Later in the array it ends the submission: the one before it is submitted.
    assert agent.call("aio.submit", ctx=ctx, iocbs=[good, "fault", good])["submitted"] == 1
    (event,) = agent.call("aio.getevents", ctx=ctx, min_nr=1, nr=2, timeout_ms=10_000)
    assert event["res"] == 4096


@pytest.mark.claim("io_submit.array_fault")
def test_array_into_unmapped_page(agent: Agent, ctx: int, scratch: int, buf: int) -> None:
    good = _pread(scratch, buf=buf)
    # The agent's iocbpp array ends where a PROT_NONE page begins: nr beyond the
    # entries makes the kernel read into it.
    assert agent.errno_of("aio.submit", ctx=ctx, iocbs=[], nr=1) == "EFAULT"
    assert agent.call("aio.submit", ctx=ctx, iocbs=[good, good], nr=5)["submitted"] == 2
    events = agent.call("aio.getevents", ctx=ctx, min_nr=2, nr=4, timeout_ms=10_000)
    assert [e["res"] for e in events] == [4096, 4096]


@pytest.mark.claim("io_submit.key_readonly")
def test_iocb_in_read_only_page_is_efault(agent: Agent, ctx: int, scratch: int, buf: int) -> None:
    assert agent.errno_of("aio.submit", ctx=ctx,
                          iocbs=[_pread(scratch, buf=buf, page="readonly")]) == "EFAULT"
    # The same iocb where the kernel can write its key is accepted.
    assert agent.call("aio.submit", ctx=ctx, iocbs=[_pread(scratch, buf=buf)])["submitted"] == 1


@pytest.mark.claim("io_submit.buf_unmapped")
def test_unmapped_user_buffer_fails_the_request(agent: Agent, ctx: int, scratch: int,
                                                deviation: Any) -> None:
    got = agent.call("aio.submit", ctx=ctx, iocbs=[_pread(scratch, buf_addr=UNMAPPED_USER)])
    assert got["submitted"] == 1
    (event,) = agent.call("aio.getevents", ctx=ctx, min_nr=1, nr=1, timeout_ms=10_000)
    assert event["res"] == -errno.EFAULT, event
    deviation(DEVIATIONS["io_submit.buf_unmapped"])


@pytest.mark.claim("io_submit.buf_kernel")
def test_kernel_address_buffer_is_efault(agent: Agent, ctx: int, scratch: int) -> None:
    assert agent.errno_of("aio.submit", ctx=ctx,
                          iocbs=[_pread(scratch, buf_addr=KERNEL_ADDR)]) == "EFAULT"
