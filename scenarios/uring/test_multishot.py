"""IORING_URING_CMD_MULTISHOT rules (6.18+) and what older kernels answer instead.

Each submission is a real NVMe Read through the generic device, so the one
valid combination does I/O.  Every wait is bounded: a multishot command to a
driver that never posts can legitimately produce no CQE at all.
"""

from __future__ import annotations

import errno
from typing import Any

import pytest

from scenarios.uring.expectations import Version, expect

# The suite tests CONFIG_IO_URING's syscalls: a kernel built without it SKIPs, not FAILs.
pytestmark = pytest.mark.requires_config("IO_URING")

BGID = 7
WAIT_MS = 5000
OFFSET = 640 << 20  # an area of the "fast" namespace no other suite touches
LENGTH = 4096
MULTISHOT, FIXED = "MULTISHOT", "FIXED"
UNKNOWN_BIT = 1 << 5  # outside IORING_URING_CMD_MASK on every kernel so far
UBLK_READS = 8
UBLK_READ_LEN = 4096  # the op's default io_len

# key in expectations.py -> (uring_cmd_flags, sqe flags)
CASES: dict[str, tuple[list[str] | int, list[str]]] = {
    "mshot.fixed": ([MULTISHOT, FIXED], []),
    "mshot.fixed+bufsel": ([MULTISHOT, FIXED], ["BUFFER_SELECT"]),
    "mshot.no_bufsel": ([MULTISHOT], []),
    "mshot.bufsel_only": ([], ["BUFFER_SELECT"]),
    "mshot.unknown_bit": (UNKNOWN_BIT, []),
}


@pytest.fixture
def io(agent: Any, nvme: dict[str, Any], big_ring: int, needs: Any) -> dict[str, Any]:
    """A big ring with provided buffers (group BGID) and a data buffer holding a pattern."""
    needs("nvme_uring_cmd")
    fast = nvme["fast"]
    name = fast.ns.rsplit("/", 1)[1]
    lba = int(agent.call("sys.read_text", path=f"/sys/block/{name}/queue/logical_block_size"))
    nsid = agent.call("nvme.nsid", path=fast.generic)
    pbuf = agent.call("uring.pbuf_register", ring=big_ring, bgid=BGID, entries=8,
                      buf_size=LENGTH)
    buf = agent.call("mem.alloc", size=LENGTH)
    pattern = bytes((i * 31 + 5) & 0xFF for i in range(LENGTH))
    agent.call("mem.write", handle=buf, data_hex=pattern.hex())
    args = {"ring": big_ring, "path": fast.generic, "slba": OFFSET // lba,
            "nblocks": LENGTH // lba, "nsid": nsid, "lba_size": lba, "timeout_ms": WAIT_MS}
    wrote = agent.call("nvme.rw", write=True, buf=buf, **args)
    assert [c["res"] for c in wrote["cqes"]] == [0], wrote
    agent.call("mem.fill", handle=buf, byte=0)
    return {"args": args, "buf": buf, "pattern": pattern, "pbuf": pbuf}


def _read(agent: Any, io: dict[str, Any], cmd_flags: list[str] | int,
          sqe_flags: list[str]) -> dict[str, Any]:
    extra = {"uring_cmd_flags": cmd_flags, "flags": sqe_flags, "buf_group": BGID}
    out: dict[str, Any] = agent.call("nvme.rw", write=False, buf=io["buf"], extra=extra,
                                     **io["args"])
    return out


@pytest.mark.parametrize("key", list(CASES))
def test_flag_rules(agent: Any, io: dict[str, Any], version: Version, key: str,
                    record: Any) -> None:
    cmd_flags, sqe_flags = CASES[key]
    out = _read(agent, io, cmd_flags, sqe_flags)
    record("cqes", out["cqes"])
    want = expect(version, key)
    assert not out["timed_out"], "a rejected submission must still post its CQE"
    assert [c["res"] for c in out["cqes"]] == [-getattr(errno, want)], (key, want, out)


def test_valid_multishot_to_nvme(agent: Any, io: dict[str, Any], version: Version,
                                 record: Any) -> None:
    """MULTISHOT + BUFFER_SELECT to NVMe: what the kernel's code path implies (see expectations)."""
    out = _read(agent, io, [MULTISHOT], ["BUFFER_SELECT"])
    # Give a late second CQE (it must not come) a bounded chance to show up.
    late = agent.call("uring.wait", ring=io["args"]["ring"], nr=1, timeout_ms=1000)
    record("cqes", out["cqes"] + late["cqes"])
    want = expect(version, "mshot.nvme_valid")
    if want != "ONESHOT":
        assert [c["res"] for c in out["cqes"]] == [-getattr(errno, want)], out
        return
    # 6.18+: prep accepts it; the nvme driver never selects a provided buffer or posts
    # a multishot CQE, it completes the command once through io_uring_cmd_done.
    assert not out["timed_out"] and late["cqes"] == []
    (cqe,) = out["cqes"]
    assert cqe["res"] == 0 and not cqe["more"] and "bid" not in cqe, cqe
    # The data went to the nvme_uring_cmd's own address, not to a provided buffer.
    assert bytes.fromhex(agent.call("mem.read", handle=io["buf"])) == io["pattern"]


@pytest.mark.requires_config("BLK_DEV_UBLK")
def test_ublk_batch_fetch_posts_more_than_once(agent: Any, needs: Any, record: Any) -> None:
    """A positive multishot: one UBLK_U_IO_FETCH_IO_CMDS, several CQEs with IORING_CQE_F_MORE.

    The agent is the ublk server (guest/ops_ublk.py): a batch-I/O device, one
    multishot FETCH armed before START_DEV, then UBLK_READS sequential O_DIRECT
    reads of /dev/ublkbN, each a separate request, so each is its own batch of
    tags and its own CQE.  The reads must come back with the server's sector
    stamp: the CQEs counted are I/O that really went through the device.
    """
    needs("ublk_batch_fetch")
    # The kernel has ublk (requires_config): a device node that never appears is the
    # kernel's failure (ENOENT, FAIL), a server that never gets its I/O a HANG.
    out = agent.call("ublk.batch_fetch", nreads=UBLK_READS, timeout_ms=60000, call_timeout=180)
    record("ublk", out)
    assert out["fetch_submissions"] == 1, out
    assert out["served_all"] and not out.get("reader_stuck"), out
    assert out["reads"] == [UBLK_READ_LEN] * UBLK_READS, out["reads"]
    assert out["mismatched_reads"] == 0, out
    assert out["with_more"] >= 2, out
    # STOP_DEV cancels the armed FETCH: exactly one last CQE, without F_MORE, carrying
    # UBLK_IO_RES_ABORT (-ENODEV, ublk_batch_cancel_cmd); all the others had F_MORE.
    assert out["fetch_final"] is not None and out["fetch_final"]["errno"] == "ENODEV", out
    assert out["fetch_cqes"] == out["with_more"] + 1, out
    # Every request the reads made was delivered through the one FETCH.
    assert len(out["tags_seen"]) >= 1 and len(out["ios"]) >= UBLK_READS, out
    assert all(r >= 0 for r in out["commits"]), out["commits"]
