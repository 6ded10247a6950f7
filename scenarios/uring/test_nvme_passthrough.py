"""NVMe passthrough through IORING_OP_URING_CMD on QEMU's emulated controller."""

from __future__ import annotations

import errno
from typing import Any

import pytest

from lab.vm.agent import Agent

# A kernel whose io_uring has no IORING_OP_URING_CMD (IORING_REGISTER_PROBE) SKIPs.
pytestmark = pytest.mark.requires_feature("uring_cmd")

QEMU_MODEL = "QEMU NVMe Ctrl"  # hw/nvme/ctrl.c: the model string QEMU reports
SLBA_BYTES = 768 << 20  # an area of the "fast" namespace no other suite touches
NBLOCKS_BYTES = 8192


def _geometry(agent: Agent, dev: Any) -> tuple[int, int]:
    name = dev.ns.rsplit("/", 1)[1]
    lba = int(agent.call("sys.read_text", path=f"/sys/block/{name}/queue/logical_block_size"))
    return lba, int(agent.call("nvme.nsid", path=dev.generic))


@pytest.mark.claim("nvme.identify")
def test_identify_controller_admin(agent: Agent, nvme: dict[str, Any], big_ring: int,
                                   record: Any) -> None:
    fast = nvme["fast"]
    out = agent.call("nvme.identify", ring=big_ring, ctrl=fast.ctrl)
    record("identify", {k: out.get(k) for k in ("serial", "model", "firmware", "vid")})
    assert out["submitted"] == 1 and not out["timed_out"]
    assert out["cqes"][0]["res"] == 0  # NVMe status: success
    assert out["serial"] == fast.serial
    assert out["model"] == QEMU_MODEL
    assert out["vid"] == 0x1B36  # Red Hat's PCI vendor id, QEMU's default


@pytest.mark.claim("nvme.passthrough_io")
def test_passthrough_write_then_block_read(agent: Agent, nvme: dict[str, Any],
                                           big_ring: int) -> None:
    fast = nvme["fast"]
    lba, nsid = _geometry(agent, fast)
    data = bytes((i * 7 + 3) & 0xFF for i in range(NBLOCKS_BYTES))
    buf = agent.call("mem.alloc", size=NBLOCKS_BYTES)
    try:
        agent.call("mem.write", handle=buf, data_hex=data.hex())
        out = agent.call("nvme.rw", ring=big_ring, path=fast.generic, write=True,
                         slba=SLBA_BYTES // lba, nblocks=NBLOCKS_BYTES // lba, buf=buf,
                         nsid=nsid, lba_size=lba)
        assert [c["res"] for c in out["cqes"]] == [0], out
        # Never read before through the block device: no stale page cache.
        fd = agent.call("fs.open", path=fast.ns, flags=["O_RDONLY"])
        try:
            got = agent.call("fs.pread", fd=fd, length=NBLOCKS_BYTES, offset=SLBA_BYTES)
        finally:
            agent.call("fs.close", fd=fd)
        assert bytes.fromhex(got) == data
    finally:
        agent.call("mem.free", handle=buf)


@pytest.mark.claim("nvme.passthrough_io")
def test_block_write_then_passthrough_read(agent: Agent, nvme: dict[str, Any],
                                           big_ring: int) -> None:
    fast = nvme["fast"]
    lba, nsid = _geometry(agent, fast)
    offset = SLBA_BYTES + (1 << 20)
    data = bytes((i * 13 + 1) & 0xFF for i in range(NBLOCKS_BYTES))
    fd = agent.call("fs.open", path=fast.ns, flags=["O_RDWR"])
    try:
        agent.call("fs.pwrite", fd=fd, data_hex=data.hex(), offset=offset)
        agent.call("fs.fsync", fd=fd)  # through the page cache to the device
    finally:
        agent.call("fs.close", fd=fd)
    buf = agent.call("mem.alloc", size=NBLOCKS_BYTES)
    try:
        out = agent.call("nvme.rw", ring=big_ring, path=fast.generic, write=False,
                         slba=offset // lba, nblocks=NBLOCKS_BYTES // lba, buf=buf,
                         nsid=nsid, lba_size=lba)
        assert [c["res"] for c in out["cqes"]] == [0], out
        assert bytes.fromhex(agent.call("mem.read", handle=buf)) == data
    finally:
        agent.call("mem.free", handle=buf)


@pytest.mark.claim("nvme.needs_big_entries")
@pytest.mark.parametrize("flags", [[], ["SQE128"], ["CQE32"]], ids=["plain", "sqe128", "cqe32"])
def test_ring_without_big_entries_is_eopnotsupp(agent: Agent, nvme: dict[str, Any],
                                                flags: list[str]) -> None:
    ring = agent.call("uring.setup", entries=4, flags=flags)["ring"]
    out = agent.call("nvme.identify", ring=ring, ctrl=nvme["fast"].ctrl)
    assert [c["res"] for c in out["cqes"]] == [-errno.EOPNOTSUPP], out
