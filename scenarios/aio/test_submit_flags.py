"""aio_rw_flags and aio_reqprio, one claim per test.

Each rejection is set against the same request without the offending part, accepted,
so that the errno stands for the rule under test and not for something else wrong.
A flag the kernel does not know (probed: guest/areas/probe/ops.py) SKIPs before the test's
fixtures run, with what the probe saw.
"""

from __future__ import annotations

import errno
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from lab.vm.agent import Agent
from scenarios.aio.conftest import EOPNOTSUPP
from scenarios.aio.expectations import (
    IOPRIO_RT,
    RWF_APPEND,
    RWF_ATOMIC,
    RWF_DONTCACHE,
    RWF_DSYNC,
    RWF_NOAPPEND,
    RWF_NOWAIT,
    RWF_UNKNOWN,
)

# IOPRIO_PRIO_VALUE(class, 0), include/uapi/linux/ioprio.h: BE is 2; 4 is no class.
IOPRIO_BE = 2 << 13
IOPRIO_CLASS_4 = 4 << 13
ATOMIC_OFFSET = 900 << 20  # an area of the "fast" namespace no other suite touches


def _io(opcode: str, fd: int, buf: int, nbytes: int = 512, **extra: Any) -> dict[str, Any]:
    return {"opcode": opcode, "fd": fd, "buf": buf, "nbytes": nbytes, "offset": 0, **extra}


def _accepted(agent: Agent, ctx: int, iocb: dict[str, Any]) -> int:
    """Submit one iocb that must be accepted; its completion's res."""
    assert agent.call("aio.submit", ctx=ctx, iocbs=[iocb])["submitted"] == 1
    (event,) = agent.call("aio.getevents", ctx=ctx, min_nr=1, nr=1, timeout_ms=10_000)
    return int(event["res"])


@pytest.mark.claim("io_submit.rwf_unknown")
def test_unknown_rw_flag_is_eopnotsupp(agent: Agent, ctx: int, scratch: int, buf: int) -> None:
    bad = _io("PWRITE", scratch, buf, rw_flags=RWF_UNKNOWN)
    assert agent.errno_of("aio.submit", ctx=ctx, iocbs=[bad]) == EOPNOTSUPP
    assert _accepted(agent, ctx, _io("PWRITE", scratch, buf, rw_flags=RWF_DSYNC)) == 512


@pytest.mark.claim("io_submit.rwf_append_noappend")
@pytest.mark.requires_feature("rwf_noappend")
def test_append_with_noappend_is_einval(agent: Agent, ctx: int, scratch: int, buf: int) -> None:
    both = _io("PWRITE", scratch, buf, rw_flags=RWF_APPEND | RWF_NOAPPEND)
    assert agent.errno_of("aio.submit", ctx=ctx, iocbs=[both]) == "EINVAL"
    for alone in (RWF_APPEND, RWF_NOAPPEND):
        assert _accepted(agent, ctx, _io("PWRITE", scratch, buf, rw_flags=alone)) == 512


@pytest.fixture
def append_only(agent: Agent) -> Iterator[dict[str, int]]:
    """A tmpfs file with the append-only attribute and an O_APPEND fd on it; the attribute
    is cleared afterwards (an append-only file cannot be unlinked)."""
    path = f"/tmp/kernel-lab-append-{uuid.uuid4().hex[:8]}"
    owner = agent.call("fs.open", path=path, flags=["O_RDWR", "O_CREAT", "O_TRUNC"])
    try:
        assert agent.call("fs.inode_flags", fd=owner, set_flags=["APPEND"]) == ["APPEND"]
        fd = agent.call("fs.open", path=path, flags=["O_WRONLY", "O_APPEND"])
        yield {"fd": fd, "owner": owner}
    finally:
        agent.call("fs.inode_flags", fd=owner, clear_flags=["APPEND"])
        agent.call("fs.unlink", path=path)


@pytest.mark.needs_root("setting the append-only attribute needs CAP_LINUX_IMMUTABLE")
@pytest.mark.claim("io_submit.rwf_noappend_append_only")
@pytest.mark.requires_feature("rwf_noappend")
def test_noappend_on_append_only_file_is_eperm(agent: Agent, ctx: int, buf: int,
                                               append_only: dict[str, int]) -> None:
    fd = append_only["fd"]
    assert agent.errno_of("aio.submit", ctx=ctx,
                          iocbs=[_io("PWRITE", fd, buf, rw_flags=RWF_NOAPPEND)]) == "EPERM"
    assert _accepted(agent, ctx, _io("PWRITE", fd, buf)) == 512  # appending is allowed


@pytest.mark.claim("io_submit.rwf_atomic_read")
@pytest.mark.requires_feature("rwf_atomic")
def test_atomic_read_is_eopnotsupp(agent: Agent, ctx: int, nvme: dict[str, Any],
                                   record: Any) -> None:
    dev = nvme["fast"].ns
    name = dev.rsplit("/", 1)[1]
    unit = int(agent.call("sys.read_text",
                          path=f"/sys/block/{name}/queue/atomic_write_unit_min_bytes"))
    record("atomic_write_unit_min_bytes", unit)
    assert unit > 0, "the emulated NVMe takes no atomic writes: nothing to set the read against"
    fd = agent.call("fs.open", path=dev, flags=["O_RDWR", "O_DIRECT"])
    buf = agent.call("mem.alloc", size=max(unit, 4096))
    write = _io("PWRITE", fd, buf, unit, offset=ATOMIC_OFFSET, rw_flags=RWF_ATOMIC)
    assert _accepted(agent, ctx, write) == unit  # the same fd takes an atomic write
    read = _io("PREAD", fd, buf, unit, offset=ATOMIC_OFFSET, rw_flags=RWF_ATOMIC)
    assert agent.errno_of("aio.submit", ctx=ctx, iocbs=[read]) == EOPNOTSUPP


@pytest.mark.claim("io_submit.rwf_nowait_unsupported")
def test_nowait_on_file_without_nowait_is_eopnotsupp(agent: Agent, ctx: int, buf: int,
                                                     nvme: dict[str, Any]) -> None:
    # procfs files (seq_file) never set FMODE_NOWAIT.
    proc = agent.call("fs.open", path="/proc/version", flags=["O_RDONLY"])
    assert agent.errno_of("aio.submit", ctx=ctx,
                          iocbs=[_io("PREAD", proc, buf, rw_flags=RWF_NOWAIT)]) == EOPNOTSUPP
    assert _accepted(agent, ctx, _io("PREAD", proc, buf)) > 0  # readable without the flag
    # A block device can do non-blocking reads (blkdev_open sets FMODE_NOWAIT on every
    # kernel here; pipes only from 6.x): the flag is accepted, and the read either finds
    # its data cached or says it would block.
    dev = agent.call("fs.open", path=nvme["fast"].ns, flags=["O_RDONLY"])
    res = _accepted(agent, ctx, _io("PREAD", dev, buf, 4096, rw_flags=RWF_NOWAIT))
    assert res in (4096, -errno.EAGAIN), res


@pytest.mark.guest_only("it mounts an ext4 image on a loop device, and its scratch file must be "
                        "on the guest's tmpfs")
@pytest.mark.claim("io_submit.rwf_dontcache_unsupported")
@pytest.mark.requires_config("EXT4_FS", "BLK_DEV_LOOP")
@pytest.mark.requires_feature("rwf_dontcache")
def test_dontcache_without_fs_support_is_eopnotsupp(agent: Agent, ctx: int, scratch: int,
                                                    buf: int) -> None:
    assert agent.errno_of("aio.submit", ctx=ctx,
                          iocbs=[_io("PWRITE", scratch, buf, rw_flags=RWF_DONTCACHE)]) \
        == EOPNOTSUPP  # tmpfs has no FOP_DONTCACHE
    point = agent.call("fs.ext4_mount", size_mb=32, call_timeout=300)
    fd = agent.call("fs.open", path=f"{point}/f", flags=["O_RDWR", "O_CREAT"])
    # ext4 has it: the same write is accepted and done.
    assert _accepted(agent, ctx, _io("PWRITE", fd, buf, rw_flags=RWF_DONTCACHE)) == 512


@pytest.mark.claim("io_submit.ioprio_bad_class")
def test_ioprio_of_unknown_class_is_einval(agent: Agent, ctx: int, scratch: int,
                                           buf: int) -> None:
    bad = _io("PREAD", scratch, buf, flags=["IOPRIO"], reqprio=IOPRIO_CLASS_4)
    assert agent.errno_of("aio.submit", ctx=ctx, iocbs=[bad]) == "EINVAL"
    good = _io("PREAD", scratch, buf, flags=["IOPRIO"], reqprio=IOPRIO_BE)
    assert _accepted(agent, ctx, good) == 512


def _rt_submit(agent: Agent, ctx: int, scratch: int, buf: int, drop: list[str]) -> str | None:
    iocb = _io("PREAD", scratch, buf, flags=["IOPRIO"], reqprio=IOPRIO_RT)
    err = agent.errno_of("creds.call", drop=drop, op="aio.submit",
                         args={"ctx": ctx, "iocbs": [iocb]})
    if err is None:
        agent.call("aio.getevents", ctx=ctx, min_nr=1, nr=1, timeout_ms=10_000)
    return None if err is None else str(err)


@pytest.mark.needs_root("the realtime I/O class needs CAP_SYS_ADMIN or CAP_SYS_NICE")
@pytest.mark.claim("io_submit.rt_prio_eperm")
def test_rt_ioprio_without_caps_is_eperm(agent: Agent, ctx: int, scratch: int, buf: int) -> None:
    assert _rt_submit(agent, ctx, scratch, buf, ["CAP_SYS_ADMIN", "CAP_SYS_NICE"]) == "EPERM"
    # The same request with the capabilities (the agent runs as root) is accepted.
    assert _rt_submit(agent, ctx, scratch, buf, []) is None


@pytest.mark.parametrize(("keep", "drop"), [
    pytest.param("CAP_SYS_ADMIN", "CAP_SYS_NICE", id="CAP_SYS_ADMIN",
                 marks=pytest.mark.claim("io_submit.rt_prio_sys_admin")),
    pytest.param("CAP_SYS_NICE", "CAP_SYS_ADMIN", id="CAP_SYS_NICE",
                 marks=pytest.mark.claim("io_submit.rt_prio_sys_nice")),
])
@pytest.mark.needs_root("the realtime I/O class needs CAP_SYS_ADMIN or CAP_SYS_NICE")
def test_rt_ioprio_with_one_cap_alone(agent: Agent, ctx: int, scratch: int, buf: int,
                                      keep: str, drop: str) -> None:
    # Without either the class is refused, so it is the one kept that allows it.
    assert _rt_submit(agent, ctx, scratch, buf, [keep, drop]) == "EPERM"
    assert _rt_submit(agent, ctx, scratch, buf, [drop]) is None
