"""The 2019 io_uring review's claims about the rings themselves, one claim per test.

Where today's kernel differs from the 2019 patch (flags, out-of-range SQ entries, CQ
overflow), the test asserts today's behaviour and records the difference.
"""

from __future__ import annotations

import errno
from typing import Any

import pytest

from lab.vm.agent import Agent
from scenarios.catalogue import DEVIATIONS

IORING_FEAT_NODROP = 1 << 1  # include/uapi/linux/io_uring.h
UNKNOWN_SQE_FLAG = 1 << 7  # above IOSQE_CQE_SKIP_SUCCESS (1 << 6), the highest defined
SHORT_MS = 1000
LONG_MS = 10_000
CACHED = "/tmp/kernel-lab-uring-cached"
INLINE_TRIES = 5


def _ring(agent: Agent, entries: int = 4, **extra: Any) -> int:
    return int(agent.call("uring.setup", entries=entries, **extra)["ring"])


def _pipe_reads(agent: Agent, ring: int, n: int) -> list[int]:
    """``n`` one-byte READs of an empty pipe, pending; returns [read end, write end]."""
    fds: list[int] = agent.call("fs.pipe")
    buf = agent.call("mem.alloc", size=4096)
    sqes = [{"opcode": "READ", "fd": fds[0], "buf": buf, "len": 1, "user_data": i + 1}
            for i in range(n)]
    assert agent.call("uring.submit", ring=ring, sqes=sqes) == n
    return fds


@pytest.mark.claim("io_uring.getevents_min_complete")
def test_getevents_waits_for_min_complete(agent: Agent, record: Any) -> None:
    ring = _ring(agent)
    _r, w = _pipe_reads(agent, ring, 2)
    agent.call("fs.write", fd=w, data_hex="2a")  # completes one of the two reads
    one = agent.call("uring.getevents", ring=ring, min_complete=1, timeout_ms=LONG_MS)
    short = agent.call("uring.getevents", ring=ring, min_complete=2, timeout_ms=SHORT_MS)
    agent.call("fs.write", fd=w, data_hex="2a")
    both = agent.call("uring.getevents", ring=ring, min_complete=2, timeout_ms=LONG_MS)
    record("getevents", {"one": one, "short": short, "both": both})
    assert one["ret"] == 0 and one["ready"] == 1, one
    # One CQE ready, two asked for: the wait ran to its timeout.  It then returns
    # -ETIME, or 0 when some CQEs are ready (io_uring/wait.c: "cq.head == cq.tail ?
    # ret : 0" on 7.2): either way not before the timeout.
    assert short["ret"] in ("ETIME", 0) and short["ready"] == 1, short
    assert short["elapsed_ns"] >= SHORT_MS * 1_000_000 * 0.9, short
    assert both["ret"] == 0 and both["ready"] == 2, both
    assert both["elapsed_ns"] < LONG_MS * 1_000_000 / 2, both


@pytest.mark.claim("io_uring.getevents_zero")
def test_getevents_min_zero_does_not_wait(agent: Agent, record: Any) -> None:
    ring = _ring(agent)
    _pipe_reads(agent, ring, 1)  # pending: nothing will complete
    got = agent.call("uring.getevents", ring=ring, min_complete=0, timeout_ms=LONG_MS)
    record("getevents", got)
    assert got["ret"] == 0 and got["ready"] == 0, got
    assert got["elapsed_ns"] < LONG_MS * 1_000_000 / 4, got


@pytest.mark.claim("io_uring.inline_cached")
def test_cached_read_completes_inline(agent: Agent, record: Any) -> None:
    """Tried up to INLINE_TRIES times: a read under NOWAIT may find the folio locked
    for a moment (writeback, reclaim on a loaded host) and is then punted to io-wq,
    which the claim allows; a kernel that never reads the cache inline fails every try."""
    ring = _ring(agent)
    fd = agent.call("fs.open", path=CACHED, flags=["O_RDWR", "O_CREAT", "O_TRUNC"])
    try:
        agent.call("fs.pwrite", fd=fd, data_hex=(b"c" * 4096).hex(), offset=0)  # in the cache
        buf = agent.call("mem.alloc", size=4096)
        tries: list[dict[str, Any]] = []
        for attempt in range(INLINE_TRIES):
            sqe = {"opcode": "READ", "fd": fd, "buf": buf, "len": 4096, "user_data": attempt}
            assert agent.call("uring.submit", ring=ring, sqes=[sqe]) == 1
            state = agent.call("uring.state", ring=ring)
            (cqe,) = agent.call("uring.wait", ring=ring, nr=1, timeout_ms=LONG_MS)["cqes"]
            tries.append({"cq_ready_after_submit": state["cq_ready"], "cqe": cqe})
            assert (cqe["user_data"], cqe["res"]) == (attempt, 4096), tries
            if state["cq_ready"] == 1:
                break
        # A read that must wait (an empty pipe) is not done by then: the contrast.
        _pipe_reads(agent, ring, 1)
        waiting = agent.call("uring.state", ring=ring)
        record("state", {"cached_reads": tries, "after_pipe_read": waiting})
        assert tries[-1]["cq_ready_after_submit"] == 1, tries
        assert waiting["cq_ready"] == 0, waiting
    finally:
        agent.call("fs.unlink", path=CACHED)


@pytest.mark.claim("io_uring.sqe_flags_unknown")
def test_unknown_sqe_flag_is_einval(agent: Agent, deviation: Any) -> None:
    ring = _ring(agent)
    bad = agent.call("uring.run", ring=ring, timeout_ms=LONG_MS,
                     sqes=[{"opcode": "NOP", "flags": UNKNOWN_SQE_FLAG, "user_data": 7}])
    assert [(c["user_data"], c["res"]) for c in bad["cqes"]] == [(7, -errno.EINVAL)], bad
    # A defined flag, which the 2019 patch would have refused, is accepted.
    good = agent.call("uring.run", ring=ring, timeout_ms=LONG_MS,
                      sqes=[{"opcode": "NOP", "flags": ["IO_DRAIN"], "user_data": 8}])
    assert [(c["user_data"], c["res"]) for c in good["cqes"]] == [(8, 0)], good
    deviation(DEVIATIONS["io_uring.sqe_flags_unknown"])


@pytest.mark.claim("io_uring.sq_index_dropped")
def test_out_of_range_sq_index_is_dropped(agent: Agent, record: Any, deviation: Any) -> None:
    ring = _ring(agent)
    before = agent.call("uring.state", ring=ring)
    taken = agent.call("uring.submit", ring=ring,
                       sqes=[{"opcode": "NOP", "user_data": 9, "sq_index": 100}])
    after = agent.call("uring.state", ring=ring)
    late = agent.call("uring.wait", ring=ring, nr=1, timeout_ms=SHORT_MS)
    record("state", {"before": before, "after": after, "submitted": taken})
    assert taken == 0
    assert after["sq_dropped"] == before["sq_dropped"] + 1, after
    assert after["sq_head"] == before["sq_head"] + 1, after  # consumed, not left behind
    assert late["cqes"] == [], late
    # The ring goes on: the next entry, in range, runs.
    ok = agent.call("uring.run", ring=ring, sqes=[{"opcode": "NOP", "user_data": 10}],
                    timeout_ms=LONG_MS)
    assert [(c["user_data"], c["res"]) for c in ok["cqes"]] == [(10, 0)], ok
    deviation(DEVIATIONS["io_uring.sq_index_dropped"])


@pytest.mark.claim("io_uring.cq_overflow")
def test_cq_overflow_keeps_completions(agent: Agent, record: Any, deviation: Any) -> None:
    setup = agent.call("uring.setup", entries=4, cq_entries=4)
    ring = setup["ring"]
    assert setup["cq_entries"] == 4 and setup["features"] & IORING_FEAT_NODROP, setup
    for first in (1, 5):  # 8 NOPs into a CQ of 4, never reaped in between
        sqes = [{"opcode": "NOP", "user_data": first + i} for i in range(4)]
        assert agent.call("uring.submit", ring=ring, sqes=sqes) == 4
    full = agent.call("uring.state", ring=ring)
    got = agent.call("uring.wait", ring=ring, nr=8, timeout_ms=LONG_MS)
    after = agent.call("uring.state", ring=ring)
    record("state", {"full": full, "after": after, "cqes": len(got["cqes"])})
    assert full["cq_ready"] == 4 and full["cq_overflow_flag"], full
    assert full["cq_overflow"] == 0, full  # nothing dropped, so nothing counted
    assert [c["user_data"] for c in got["cqes"]] == list(range(1, 9)), got
    assert not after["cq_overflow_flag"] and after["cq_overflow"] == 0, after
    deviation(DEVIATIONS["io_uring.cq_overflow"])
