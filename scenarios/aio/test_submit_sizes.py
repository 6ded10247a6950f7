"""Offsets, sizes, vectored I/O and the sync/poll opcodes' fields, one claim per test."""

from __future__ import annotations

from typing import Any

import pytest

from lab.vm.agent import Agent
from scenarios.aio.conftest import poll
from scenarios.catalogue import DEVIATIONS

UIO_MAXIOV = 1024  # include/uapi/linux/uio.h
LOFF_MAX = (1 << 63) - 1
# An area of the "fast" namespace no other suite touches (multishot 640M, passthrough 768M).
SYNC_OFFSET = 896 << 20


def _pread(fd: int, buf: int, **extra: Any) -> dict[str, Any]:
    return {"opcode": "PREAD", "fd": fd, "buf": buf, "nbytes": 4096, "offset": 0, **extra}


def _one_event(agent: Agent, ctx: int) -> dict[str, Any]:
    (event,) = agent.call("aio.getevents", ctx=ctx, min_nr=1, nr=1, timeout_ms=10_000)
    return dict(event)


@pytest.mark.claim("io_submit.offset_negative")
def test_negative_offset_is_einval(agent: Agent, ctx: int, scratch: int, buf: int) -> None:
    assert agent.errno_of("aio.submit", ctx=ctx, iocbs=[_pread(scratch, buf, offset=-4096)]) \
        == "EINVAL"
    # The same read at offset 0 goes through: only the offset was wrong.
    agent.call("aio.submit", ctx=ctx, iocbs=[_pread(scratch, buf)])
    assert _one_event(agent, ctx)["res"] == 4096


@pytest.mark.claim("io_submit.offset_overflow")
def test_offset_plus_size_overflow_is_einval(agent: Agent, ctx: int, scratch: int, buf: int,
                                             deviation: Any) -> None:
    # pos + count wraps past LLONG_MAX; a tmpfs file has no unsigned offsets.
    iocb = _pread(scratch, buf, offset=LOFF_MAX - 100)
    assert agent.errno_of("aio.submit", ctx=ctx, iocbs=[iocb]) == "EINVAL"
    deviation(DEVIATIONS["io_submit.offset_overflow"])


@pytest.mark.claim("io_submit.nbytes_overflow")
def test_nbytes_above_ssize_max_is_einval(agent: Agent, ctx: int, scratch: int, buf: int) -> None:
    assert agent.errno_of("aio.submit", ctx=ctx, iocbs=[_pread(scratch, buf, nbytes=1 << 63)]) \
        == "EINVAL"


@pytest.mark.claim("io_submit.iovcnt_max")
def test_iovec_count_above_uio_maxiov_is_einval(agent: Agent, ctx: int, scratch: int,
                                                buf: int) -> None:
    def readv(count: int) -> dict[str, Any]:
        return {"opcode": "PREADV", "fd": scratch, "offset": 0,
                "iov": [[buf, i % 4096, 1] for i in range(count)]}

    assert agent.errno_of("aio.submit", ctx=ctx, iocbs=[readv(UIO_MAXIOV + 1)]) == "EINVAL"
    assert agent.call("aio.submit", ctx=ctx, iocbs=[readv(UIO_MAXIOV)])["submitted"] == 1
    assert _one_event(agent, ctx)["res"] == UIO_MAXIOV


@pytest.mark.claim("io_submit.preadv")
def test_preadv_scatters_in_order(agent: Agent, ctx: int, scratch: int) -> None:
    data = bytes(range(256)) * 4
    agent.call("fs.pwrite", fd=scratch, data_hex=data.hex(), offset=8192)
    a, b = agent.call("mem.alloc", size=4096), agent.call("mem.alloc", size=4096)
    spec = {"opcode": "PREADV", "fd": scratch, "offset": 8192,
            "iov": [[a, 100, 10], [b, 0, 500], [a, 2000, 514]]}
    assert agent.call("aio.submit", ctx=ctx, iocbs=[spec])["submitted"] == 1
    assert _one_event(agent, ctx)["res"] == 1024
    got = (bytes.fromhex(agent.call("mem.read", handle=a, offset=100, length=10))
           + bytes.fromhex(agent.call("mem.read", handle=b, offset=0, length=500))
           + bytes.fromhex(agent.call("mem.read", handle=a, offset=2000, length=514)))
    assert got == data


@pytest.mark.claim("io_submit.pwritev")
def test_pwritev_gathers_in_order(agent: Agent, ctx: int, scratch: int) -> None:
    a, b = agent.call("mem.alloc", size=4096), agent.call("mem.alloc", size=4096)
    agent.call("mem.write", handle=a, data_hex=(b"A" * 100 + b"C" * 50).hex())
    agent.call("mem.write", handle=b, data_hex=(b"B" * 300).hex())
    spec = {"opcode": "PWRITEV", "fd": scratch, "offset": 12288,
            "iov": [[a, 0, 100], [b, 0, 300], [a, 100, 50]]}
    assert agent.call("aio.submit", ctx=ctx, iocbs=[spec])["submitted"] == 1
    assert _one_event(agent, ctx)["res"] == 450
    got = bytes.fromhex(agent.call("fs.pread", fd=scratch, length=452, offset=12287))
    assert got == b"\0" + b"A" * 100 + b"B" * 300 + b"C" * 50 + b"\0"


def _flushes(agent: Agent, name: str) -> int | None:
    # /sys/block/X/stat field 16 (5.5+): flush requests completed.
    fields = agent.call("sys.read_text", path=f"/sys/block/{name}/stat").split()
    return int(fields[15]) if len(fields) > 15 else None


@pytest.mark.parametrize("opcode", [
    pytest.param(op, marks=pytest.mark.claim(f"io_submit.{op.lower()}"), id=op)
    for op in ("FSYNC", "FDSYNC")
])
def test_sync_flushes_block_device(agent: Agent, ctx: int, nvme: dict[str, Any], opcode: str,
                                   record: Any) -> None:
    dev = nvme["fast"].ns
    name = dev.rsplit("/", 1)[1]
    cache = agent.call("sys.read_text", path=f"/sys/block/{name}/queue/write_cache").strip()
    fd = agent.call("fs.open", path=dev, flags=["O_RDWR"])
    agent.call("fs.pwrite", fd=fd, data_hex=(b"sync" * 1024).hex(), offset=SYNC_OFFSET)
    before = _flushes(agent, name)
    assert agent.call("aio.submit", ctx=ctx, iocbs=[{"opcode": opcode, "fd": fd}])[
        "submitted"] == 1
    event = _one_event(agent, ctx)
    after = _flushes(agent, name)
    record("sync", {"write_cache": cache, "flushes_before": before, "flushes_after": after})
    assert event["res"] == 0, event
    if cache == "write back" and before is not None and after is not None:
        # A device with a volatile cache gets a flush command for the dirty data.
        assert after > before, (before, after)


@pytest.mark.claim("io_submit.fsync_fields")
@pytest.mark.parametrize("field", ["buf_addr", "offset", "nbytes", "rw_flags"])
def test_fsync_with_a_field_set_is_einval(agent: Agent, ctx: int, scratch: int,
                                          field: str) -> None:
    assert agent.errno_of("aio.submit", ctx=ctx,
                          iocbs=[{"opcode": "FSYNC", "fd": scratch, field: 1}]) == "EINVAL"
    # Without the field, the same FSYNC is accepted.
    assert agent.call("aio.submit", ctx=ctx, iocbs=[{"opcode": "FSYNC", "fd": scratch}])[
        "submitted"] == 1
    assert _one_event(agent, ctx)["res"] == 0


@pytest.mark.claim("io_submit.fsync_unsupported")
def test_fsync_of_a_pipe_is_einval(agent: Agent, ctx: int, pipe: list[int]) -> None:
    assert agent.errno_of("aio.submit", ctx=ctx, iocbs=[{"opcode": "FSYNC", "fd": pipe[1]}]) \
        == "EINVAL"


@pytest.mark.claim("io_submit.poll_fields")
@pytest.mark.parametrize("extra", [{"offset": 1}, {"nbytes": 1}, {"rw_flags": 1},
                                   {"events": 1 << 16}],
                         ids=["offset", "nbytes", "rw_flags", "events-beyond-16-bits"])
def test_poll_with_a_field_set_is_einval(agent: Agent, ctx: int, pipe: list[int],
                                         extra: dict[str, Any]) -> None:
    assert agent.errno_of("aio.submit", ctx=ctx, iocbs=[poll(pipe[0], **extra)]) == "EINVAL"
    assert agent.call("aio.submit", ctx=ctx, iocbs=[poll(pipe[0])])["submitted"] == 1
