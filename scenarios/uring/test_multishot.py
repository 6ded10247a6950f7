"""IORING_URING_CMD_MULTISHOT rules (6.18+), the uring_cmd flag mask, and what older
kernels answer instead.

Each submission is a real NVMe Read through the generic device, so a valid
combination does I/O.  Every wait is bounded: a multishot command to a driver that
never posts can legitimately produce no CQE at all.  Each rule is set against a
combination that is accepted (MULTISHOT with BUFFER_SELECT; FIXED alone), so that one
EINVAL cannot stand for another.
"""

from __future__ import annotations

import errno
from typing import Any

import pytest

from lab.vm.agent import Agent
from scenarios.uring.expectations import by_multishot

# A kernel whose io_uring has no IORING_OP_URING_CMD (IORING_REGISTER_PROBE) SKIPs.
pytestmark = pytest.mark.requires_feature("uring_cmd")

BGID = 7
WAIT_MS = 5000
OFFSET = 640 << 20  # an area of the "fast" namespace no other suite touches
LENGTH = 4096
MULTISHOT, FIXED = "MULTISHOT", "FIXED"
UNKNOWN_BIT = 1 << 5  # outside IORING_URING_CMD_MASK on every kernel so far
TOP_BITS = [1 << b for b in range(24, 32)]  # "top 8bits aren't available for userspace"
UBLK_READS = 8
UBLK_READ_LEN = 4096  # the op's default io_len

# The multishot rules, one each: key in expectations.py -> (uring_cmd_flags, sqe flags,
# the claim).  FIXED with MULTISHOT goes with BUFFER_SELECT, so only the FIXED rule fails.
RULES: dict[str, tuple[list[str] | int, list[str], str]] = {
    "mshot.fixed+bufsel": ([MULTISHOT, FIXED], ["BUFFER_SELECT"], "uring_cmd.multishot.fixed"),
    "mshot.no_bufsel": ([MULTISHOT], [], "uring_cmd.multishot.needs_bufsel"),
    "mshot.bufsel_only": ([], ["BUFFER_SELECT"], "uring_cmd.multishot.bufsel_needs_mshot"),
}
# Before 6.18 the same submissions, and the valid multishot one, meet older checks.
BEFORE_MULTISHOT: dict[str, tuple[list[str] | int, list[str]]] = {
    **{key: (cmd, sqe) for key, (cmd, sqe, _) in RULES.items()},
    "mshot.nvme_valid": ([MULTISHOT], ["BUFFER_SELECT"]),
}


@pytest.fixture
def io(agent: Agent, nvme: dict[str, Any], big_ring: int) -> dict[str, Any]:
    """A big ring with provided buffers (group BGID) and a data buffer holding a pattern."""
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


def _read(agent: Agent, io: dict[str, Any], cmd_flags: list[str] | int,
          sqe_flags: list[str]) -> dict[str, Any]:
    extra = {"uring_cmd_flags": cmd_flags, "flags": sqe_flags, "buf_group": BGID}
    out: dict[str, Any] = agent.call("nvme.rw", write=False, buf=io["buf"], extra=extra,
                                     **io["args"])
    return out


def _res(out: dict[str, Any]) -> list[int]:
    assert not out["timed_out"], "a rejected submission must still post its CQE"
    return [c["res"] for c in out["cqes"]]


@pytest.mark.requires_feature("uring_cmd_multishot")
@pytest.mark.parametrize("key", [
    pytest.param(key, marks=pytest.mark.claim(claim), id=key)
    for key, (_, _, claim) in RULES.items()
])
def test_flag_rules(agent: Agent, io: dict[str, Any], key: str, record: Any) -> None:
    cmd_flags, sqe_flags, _ = RULES[key]
    out = _read(agent, io, cmd_flags, sqe_flags)
    record("cqes", out["cqes"])
    assert _res(out) == [-getattr(errno, by_multishot(key, has=True))], (key, out)


@pytest.mark.claim("uring_cmd.unknown_flag")
def test_unknown_uring_cmd_flag(agent: Agent, io: dict[str, Any], record: Any) -> None:
    out = _read(agent, io, UNKNOWN_BIT, [])
    record("cqes", out["cqes"])
    assert _res(out) == [-getattr(errno, by_multishot("mshot.unknown_bit", has=True))], out


@pytest.mark.claim("uring_cmd.top_bits")
def test_top_uring_cmd_flag_bits_refused(agent: Agent, io: dict[str, Any], record: Any) -> None:
    got = {hex(bit): _res(_read(agent, io, bit, [])) for bit in TOP_BITS}
    record("res_by_bit", got)
    assert got == {hex(bit): [-errno.EINVAL] for bit in TOP_BITS}


@pytest.mark.claim("uring_cmd.fixed_ok")
def test_fixed_alone_is_accepted(agent: Agent, io: dict[str, Any], record: Any) -> None:
    assert agent.call("uring.register_buffers", ring=io["args"]["ring"], bufs=[io["buf"]]) == 0
    out: dict[str, Any] = agent.call("nvme.rw", write=False, buf=io["buf"],
                                     extra={"uring_cmd_flags": [FIXED], "buf_index": 0},
                                     **io["args"])
    record("cqes", out["cqes"])
    assert _res(out) == [0], out
    assert bytes.fromhex(agent.call("mem.read", handle=io["buf"])) == io["pattern"]


@pytest.mark.claim("uring_cmd.multishot.before_6_18")
@pytest.mark.requires_feature("!uring_cmd_multishot")  # else test_flag_rules
@pytest.mark.parametrize("key", list(BEFORE_MULTISHOT))
def test_before_multishot(agent: Agent, io: dict[str, Any], key: str, record: Any) -> None:
    cmd_flags, sqe_flags = BEFORE_MULTISHOT[key]
    out = _read(agent, io, cmd_flags, sqe_flags)
    record("cqes", out["cqes"])
    assert _res(out) == [-getattr(errno, by_multishot(key, has=False))], (key, out)


@pytest.mark.claim("uring_cmd.multishot.nvme_oneshot")
@pytest.mark.requires_feature("uring_cmd_multishot")
def test_valid_multishot_to_nvme(agent: Agent, io: dict[str, Any], record: Any) -> None:
    """MULTISHOT + BUFFER_SELECT to NVMe: prep accepts it; the nvme driver never selects a
    provided buffer or posts a multishot CQE, it completes the command once."""
    out = _read(agent, io, [MULTISHOT], ["BUFFER_SELECT"])
    # Give a late second CQE (it must not come) a bounded chance to show up.
    late = agent.call("uring.wait", ring=io["args"]["ring"], nr=1, timeout_ms=1000)
    record("cqes", out["cqes"] + late["cqes"])
    assert not out["timed_out"] and late["cqes"] == []
    (cqe,) = out["cqes"]
    assert cqe["res"] == 0 and not cqe["more"] and "bid" not in cqe, cqe
    # The data went to the nvme_uring_cmd's own address, not to a provided buffer.
    assert bytes.fromhex(agent.call("mem.read", handle=io["buf"])) == io["pattern"]


@pytest.mark.guest_only("the agent adds a ublk device to the kernel")
@pytest.mark.claim("uring_cmd.multishot.posts_more")
@pytest.mark.requires_config("BLK_DEV_UBLK")
@pytest.mark.requires_feature("ublk_batch_fetch")
def test_ublk_batch_fetch_posts_more_than_once(agent: Agent, record: Any) -> None:
    """A positive multishot: one UBLK_U_IO_FETCH_IO_CMDS, several CQEs with IORING_CQE_F_MORE.

    The agent is the ublk server (guest/areas/ublk/ops.py): a batch-I/O device, one
    multishot FETCH armed before START_DEV, then UBLK_READS sequential O_DIRECT
    reads of /dev/ublkbN, each a separate request, so each is its own batch of
    tags and its own CQE.  The reads must come back with the server's sector
    stamp: the CQEs counted are I/O that really went through the device.
    """
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
