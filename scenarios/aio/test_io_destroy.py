"""io_destroy claims, one per test (see claims.py)."""

from __future__ import annotations

from typing import Any

import pytest

from lab.vm.agent import Agent

SLOW_READS = 12  # on the throttled NVMe (25 IOPS): about half a second of I/O


def _aio_nr(agent: Agent) -> int:
    return int(agent.call("sys.read_text", path="/proc/sys/fs/aio-nr"))


@pytest.mark.claim("io_destroy.twice")
def test_destroy_twice_is_einval(agent: Agent) -> None:
    handle = agent.call("aio.setup", nr_events=4)
    assert agent.errno_of("aio.destroy", ctx=handle) is None
    assert agent.errno_of("aio.destroy", ctx=handle) == "EINVAL"


@pytest.mark.claim("io_destroy.aio_nr")
@pytest.mark.guest_only("aio-nr counts every process's contexts: on a host, others' come and go")
@pytest.mark.parametrize("nr_events", [1, 128, 4096])
def test_aio_nr_accounting(agent: Agent, nr_events: int) -> None:
    before = _aio_nr(agent)
    handle = agent.call("aio.setup", nr_events=nr_events)
    assert _aio_nr(agent) - before == nr_events
    agent.call("aio.destroy", ctx=handle)
    assert _aio_nr(agent) == before


@pytest.mark.claim("io_destroy.cancels_poll")
def test_destroy_cancels_pending_poll(agent: Agent, pipe: list[int], record: Any) -> None:
    efd = agent.call("fs.eventfd", initval=0, flags=["EFD_NONBLOCK"])
    handle = agent.call("aio.setup", nr_events=4)
    try:
        poll = {"opcode": "POLL", "fd": pipe[0], "events": ["POLLIN"],
                "flags": ["RESFD"], "resfd": efd}
        assert agent.call("aio.submit", ctx=handle, iocbs=[poll] * 2)["submitted"] == 2
        assert agent.errno_of("fs.eventfd_read", fd=efd) == "EAGAIN"  # both still pending
        agent.call("aio.destroy", ctx=handle, call_timeout=60)
        record("destroy_seconds", agent.last_elapsed_ns / 1e9)
        # Cancelled requests complete (through aio_complete), which signals the eventfd.
        assert agent.call("fs.eventfd_read", fd=efd) == 2
    finally:
        agent.call("fs.close", fd=efd)
        agent.call("aio.free_iocbs")


@pytest.mark.claim("io_destroy.waits_inflight")
def test_destroy_waits_for_inflight_direct_io(agent: Agent, nvme: dict[str, Any],
                                              record: Any) -> None:
    slow = nvme["slow"].ns
    fd = agent.call("fs.open", path=slow, flags=["O_RDONLY", "O_DIRECT"])
    efd = agent.call("fs.eventfd", initval=0, flags=["EFD_NONBLOCK"])
    bufs = [agent.call("mem.alloc", size=4096) for _ in range(SLOW_READS)]
    handle = agent.call("aio.setup", nr_events=SLOW_READS)
    try:
        reads = [{"opcode": "PREAD", "fd": fd, "buf": b, "nbytes": 4096,
                  "offset": i * (1 << 20), "flags": ["RESFD"], "resfd": efd}
                 for i, b in enumerate(bufs)]
        assert agent.call("aio.submit", ctx=handle, iocbs=reads)["submitted"] == SLOW_READS
        submit_s = agent.last_elapsed_ns / 1e9
        pending_at_destroy = SLOW_READS - _eventfd_count(agent, efd)
        agent.call("aio.destroy", ctx=handle, call_timeout=120)
        destroy_s = agent.last_elapsed_ns / 1e9
        done_after = _eventfd_count(agent, efd)
        record("submit_seconds", round(submit_s, 3))
        record("destroy_seconds", round(destroy_s, 3))
        record("pending_at_destroy", pending_at_destroy)
        # The throttled device must have left I/O in flight, or nothing was tested.
        assert pending_at_destroy > 0
        # When io_destroy returned, every read had completed (signalled its eventfd).
        assert done_after == pending_at_destroy
        # And it waited: at 25 IOPS the pending reads take at least pending/25 s
        # (half that, for QEMU's throttling bursts).
        assert destroy_s >= pending_at_destroy / 25 / 2
    finally:
        agent.call("fs.close", fd=efd)
        agent.call("fs.close", fd=fd)
        for b in bufs:
            agent.call("mem.free", handle=b)
        agent.call("aio.free_iocbs")


def _eventfd_count(agent: Agent, efd: int) -> int:
    try:
        return int(agent.call("fs.eventfd_read", fd=efd))
    except OSError:
        return 0  # EAGAIN: nothing completed since the last read
