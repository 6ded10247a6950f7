"""io_submit's count and ring claims, and the checks on an iocb's fd and mode, one per test."""

from __future__ import annotations

from typing import Any

import pytest

from lab.vm.agent import Agent
from scenarios.aio.conftest import EOPNOTSUPP, SCRATCH, poll
from scenarios.aio.expectations import RWF_UNKNOWN
from scenarios.catalogue import DEVIATIONS

KEY = 0x5A5A  # an aio_key the kernel did not write


def _pwrite(fd: int, buf: int, offset: int = 0, **extra: Any) -> dict[str, Any]:
    return {"opcode": "PWRITE", "fd": fd, "buf": buf, "nbytes": 512, "offset": offset, **extra}


def _cpus(text: str) -> int:
    """CPUs in a sysfs list: "0-1,3" -> 3."""
    total = 0
    for part in text.strip().split(","):
        lo, _, hi = part.partition("-")
        total += int(hi or lo) - int(lo) + 1
    return total


@pytest.mark.claim("io_submit.nr_negative")
def test_negative_nr_is_einval(agent: Agent, ctx: int, scratch: int, buf: int) -> None:
    # A valid iocb, so the count is the only thing wrong.
    assert agent.errno_of("aio.submit", ctx=ctx, iocbs=[_pwrite(scratch, buf)], nr=-1) == "EINVAL"
    assert agent.call("aio.getevents", ctx=ctx, min_nr=0, nr=1, timeout_ms=0) == []


@pytest.mark.claim("io_submit.nr0_bad_ctx")
def test_nr_zero_with_bad_ctx_is_einval(agent: Agent, deviation: Any) -> None:
    dead = agent.call("aio.setup", nr_events=1)
    agent.call("aio.destroy", ctx=dead)
    assert agent.errno_of("aio.submit", ctx=dead, iocbs=[], nr=0) == "EINVAL"
    deviation(DEVIATIONS["io_submit.nr0_bad_ctx"])


@pytest.mark.claim("io_submit.nr_clamped")
def test_nr_capped_at_ring_capacity(agent: Agent, scratch: int, buf: int, record: Any) -> None:
    agent.call("thread.affinity", cpus=[0])  # every slot from one CPU's batches
    handle = agent.call("aio.setup", nr_events=8)
    nr = agent.call("aio.ring", ctx=handle)["nr"]
    # Buffered writes to tmpfs complete inside io_submit.  With the ring's head moved
    # ahead, the kernel counts head's slots as reaped once the tail passes it
    # (refill_reqs_available) and hands them out again: the call can run out of iocbs
    # to read, never of slots, so only the cap can stop it.
    agent.call("aio.ring_write", ctx=handle, field="head", value=nr // 2)
    many = nr + 64
    got = agent.call("aio.submit", ctx=handle,
                     iocbs=[_pwrite(scratch, buf, (i % 64) * 512, key=KEY) for i in range(many)])
    record("submit", {"ring_nr": nr, "iocbs": many, "submitted": got["submitted"]})
    assert got["submitted"] == nr
    # The first iocb past the cap was never taken: its key is as written.
    assert agent.call("aio.iocb", id=got["iocbs"][nr])["key"] == KEY
    # And slots were left: the stop was the cap, not EAGAIN.
    assert agent.call("aio.submit", ctx=handle, iocbs=[_pwrite(scratch, buf)])["submitted"] == 1
    agent.call("aio.destroy", ctx=handle)


@pytest.mark.claim("io_submit.ring_full")
def test_ring_full_at_its_exact_capacity(agent: Agent, pipe: list[int], record: Any) -> None:
    nr_events = 8
    agent.call("thread.affinity", cpus=[0])  # one CPU's batches: the count is exact
    handle = agent.call("aio.setup", nr_events=nr_events)
    ring_nr = agent.call("aio.ring", ctx=handle)["nr"]
    possible = _cpus(agent.call("sys.read_text", path="/sys/devices/system/cpu/possible"))
    # fs/aio.c: ioctx_alloc makes nr_events - 1 slots available and hands them to CPUs in
    # batches of (nr_events - 1) / (possible CPUs * 4); a CPU takes whole batches only.
    batch = max(1, (ring_nr - 1) // (possible * 4))
    want = (ring_nr - 1) // batch * batch
    in_flight, err = 0, None
    for _ in range(64):  # bounded: 64 batches of 32 pending polls
        try:
            in_flight += agent.call("aio.submit", ctx=handle,
                                    iocbs=[poll(pipe[0])] * 32)["submitted"]
        except OSError as exc:
            err = getattr(exc, "errno_name", None)
            break
    record("capacity", {"ring_nr": ring_nr, "possible_cpus": possible, "batch": batch,
                        "expected": want, "in_flight_at_eagain": in_flight})
    assert err == "EAGAIN"
    assert in_flight == want >= nr_events


@pytest.mark.claim("io_submit.data_echoed")
def test_aio_data_echoed_in_event(agent: Agent, ctx: int, scratch: int, buf: int) -> None:
    datas = [0xFFFF_FFFF_FFFF_FFFF, 0, 0x0123_4567_89AB_CDEF]
    got = agent.call("aio.submit", ctx=ctx, iocbs=[_pwrite(scratch, buf, i * 512, data=d)
                                                   for i, d in enumerate(datas)])
    events = agent.call("aio.getevents", ctx=ctx, min_nr=3, nr=3, timeout_ms=10_000)
    addrs = {agent.call("aio.iocb", id=i)["addr"]: d for i, d in zip(got["iocbs"], datas,
                                                                       strict=True)}
    assert {e["obj"]: e["data"] for e in events} == addrs


@pytest.mark.claim("io_submit.key_order")
def test_key_written_before_opcode_checks(agent: Agent, ctx: int, scratch: int, buf: int,
                                          deviation: Any) -> None:
    rejected = {
        "opcode": ({"opcode": 0x7F, "fd": scratch, "key": KEY}, "EINVAL"),
        "rw_flags": (_pwrite(scratch, buf, key=KEY, rw_flags=RWF_UNKNOWN), EOPNOTSUPP),
        "fd": (_pwrite(9999, buf, key=KEY), "EBADF"),
    }
    keys = {}
    for why, (iocb, err) in rejected.items():
        assert agent.errno_of("aio.submit", ctx=ctx, iocbs=[iocb]) == err, why
        keys[why] = agent.call("aio.iocb", id=agent.call("aio.last_iocbs")[0])["key"]
    # Rejected after the write: zeroed.  Rejected before it (the fd): as written.
    assert keys == {"opcode": 0, "rw_flags": 0, "fd": KEY}
    deviation(DEVIATIONS["io_submit.key_order"])


@pytest.mark.claim("io_submit.write_rdonly")
def test_write_on_read_only_fd_is_ebadf(agent: Agent, ctx: int, scratch: int, buf: int) -> None:
    rdonly = agent.call("fs.open", path=SCRATCH, flags=["O_RDONLY"])
    assert agent.errno_of("aio.submit", ctx=ctx, iocbs=[_pwrite(rdonly, buf)]) == "EBADF"
    # The same write through the read-write fd is accepted.
    assert agent.call("aio.submit", ctx=ctx, iocbs=[_pwrite(scratch, buf)])["submitted"] == 1


@pytest.mark.claim("io_submit.no_read_iter")
def test_read_of_directory_is_einval(agent: Agent, ctx: int, buf: int) -> None:
    d = agent.call("fs.open", path="/tmp", flags=["O_RDONLY", "O_DIRECTORY"])
    read = {"opcode": "PREAD", "fd": d, "buf": buf, "nbytes": 512}
    assert agent.errno_of("aio.submit", ctx=ctx, iocbs=[read]) == "EINVAL"


@pytest.mark.claim("io_submit.resfd_bad_fd")
def test_resfd_not_open_is_ebadf(agent: Agent, ctx: int, scratch: int, buf: int) -> None:
    iocb = _pwrite(scratch, buf, flags=["RESFD"], resfd=9999)
    assert agent.errno_of("aio.submit", ctx=ctx, iocbs=[iocb]) == "EBADF"
