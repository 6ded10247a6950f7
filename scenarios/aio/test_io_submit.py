"""io_submit claims, one per test (see claims.py)."""

from __future__ import annotations

from typing import Any

import pytest

from lab.vm.agent import Agent
from scenarios.catalogue import DEVIATIONS


def _pwrite(fd: int, buf: int, offset: int = 0, **extra: Any) -> dict[str, Any]:
    return {"opcode": "PWRITE", "fd": fd, "buf": buf, "nbytes": 4096, "offset": offset, **extra}


def _pread(fd: int, buf: int, offset: int = 0, **extra: Any) -> dict[str, Any]:
    return {"opcode": "PREAD", "fd": fd, "buf": buf, "nbytes": 4096, "offset": offset, **extra}


@pytest.mark.claim("io_submit.nr0")
def test_nr_zero_returns_zero(agent: Agent, ctx: int, scratch: int, buf: int) -> None:
    got = agent.call("aio.submit", ctx=ctx, iocbs=[_pwrite(scratch, buf)], nr=0)
    assert got["submitted"] == 0
    assert agent.call("aio.getevents", ctx=ctx, min_nr=0, nr=1, timeout_ms=0) == []


@pytest.mark.claim("io_submit.partial")
def test_partial_submission_returns_index_of_first_bad(
    agent: Agent, ctx: int, scratch: int, buf: int
) -> None:
    good = [_pwrite(scratch, buf, 0), _pwrite(scratch, buf, 4096)]
    bad = {"opcode": "PWRITE", "fd": 9999, "buf": buf, "nbytes": 4096}
    got = agent.call("aio.submit", ctx=ctx, iocbs=[*good, bad, _pwrite(scratch, buf, 8192)])
    assert got["submitted"] == 2
    events = agent.call("aio.getevents", ctx=ctx, min_nr=2, nr=4, timeout_ms=10_000)
    assert sorted(e["iocb"] for e in events) == sorted(got["iocbs"][:2])
    assert all(e["res"] == 4096 for e in events)


@pytest.mark.claim("io_submit.null_iocb")
def test_null_iocb_pointer_is_efault(agent: Agent, ctx: int) -> None:
    assert agent.errno_of("aio.submit", ctx=ctx, iocbs=["null"]) == "EFAULT"


@pytest.mark.claim("io_submit.reserved2")
def test_reserved2_nonzero_is_einval(agent: Agent, ctx: int, scratch: int, buf: int) -> None:
    iocb = _pwrite(scratch, buf, reserved2=1)
    assert agent.errno_of("aio.submit", ctx=ctx, iocbs=[iocb]) == "EINVAL"


@pytest.mark.claim("io_submit.bad_opcode")
def test_unknown_opcode_is_einval(agent: Agent, ctx: int, scratch: int, buf: int) -> None:
    iocb = {"opcode": 0x7F, "fd": scratch, "buf": buf, "nbytes": 4096}
    assert agent.errno_of("aio.submit", ctx=ctx, iocbs=[iocb]) == "EINVAL"


@pytest.mark.claim("io_submit.noop")
def test_noop_opcode(agent: Agent, ctx: int, scratch: int, deviation: Any) -> None:
    err = agent.errno_of("aio.submit", ctx=ctx, iocbs=[{"opcode": "NOOP", "fd": scratch}])
    # The kernel's behaviour is asserted; the spec text that says otherwise is recorded.
    assert err == "EINVAL"
    deviation(DEVIATIONS["io_submit.noop"])


@pytest.mark.claim("io_submit.bad_fd")
def test_bad_fd_is_ebadf(agent: Agent, ctx: int, buf: int) -> None:
    iocb = {"opcode": "PREAD", "fd": 9999, "buf": buf, "nbytes": 4096}
    assert agent.errno_of("aio.submit", ctx=ctx, iocbs=[iocb]) == "EBADF"


@pytest.mark.claim("io_submit.read_wronly")
def test_read_on_write_only_fd_is_ebadf(agent: Agent, ctx: int, scratch: int, buf: int) -> None:
    wronly = agent.call("fs.open", path="/tmp/kernel-lab-aio-scratch", flags=["O_WRONLY"])
    try:
        assert agent.errno_of("aio.submit", ctx=ctx, iocbs=[_pread(wronly, buf)]) == "EBADF"
    finally:
        agent.call("fs.close", fd=wronly)


@pytest.mark.claim("io_submit.resfd_not_eventfd")
def test_resfd_not_an_eventfd_is_einval(agent: Agent, ctx: int, scratch: int, buf: int) -> None:
    iocb = _pwrite(scratch, buf, flags=["RESFD"], resfd=scratch)
    assert agent.errno_of("aio.submit", ctx=ctx, iocbs=[iocb]) == "EINVAL"


@pytest.mark.claim("io_submit.resfd_signalled")
def test_resfd_eventfd_is_signalled(agent: Agent, ctx: int, scratch: int, buf: int) -> None:
    efd = agent.call("fs.eventfd", initval=0, flags=["EFD_NONBLOCK"])
    try:
        iocbs = [_pwrite(scratch, buf, i * 4096, flags=["RESFD"], resfd=efd) for i in range(3)]
        assert agent.call("aio.submit", ctx=ctx, iocbs=iocbs)["submitted"] == 3
        events = agent.call("aio.getevents", ctx=ctx, min_nr=3, nr=3, timeout_ms=10_000)
        assert [e["res"] for e in events] == [4096] * 3
        assert agent.call("fs.eventfd_read", fd=efd) == 3
    finally:
        agent.call("fs.close", fd=efd)


@pytest.mark.claim("io_submit.key_zeroed")
def test_aio_key_written_as_zero(agent: Agent, ctx: int, scratch: int, buf: int) -> None:
    got = agent.call("aio.submit", ctx=ctx, iocbs=[_pwrite(scratch, buf, key=0x1234)])
    assert got["submitted"] == 1
    assert agent.call("aio.iocb", id=got["iocbs"][0])["key"] == 0
    agent.call("aio.getevents", ctx=ctx, min_nr=1, nr=1, timeout_ms=10_000)
