"""The agent's ops behind the claims suites, against the host kernel: real syscalls, no VM.

The scenarios run these in a guest on every kernel; here they run on whatever kernel
runs the tests, so a broken op shows in seconds (thread.* watching a syscall, the
ring header, read-only iocbs, io_cancel's result, uring ring state).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from lab.vm.agent import Agent

PREAD = "PREAD"


def _file(agent: Agent, tmp_path: Path, size: int = 65536) -> int:
    fd: int = agent.call("fs.open", path=str(tmp_path / "f"), flags=["O_RDWR", "O_CREAT"])
    agent.call("fs.ftruncate", fd=fd, length=size)
    return fd


def test_signal_interrupts_a_pipe_read_inside_io_submit(agent: Agent) -> None:
    ctx = agent.call("aio.setup", nr_events=4)
    r, _w = agent.call("fs.pipe")
    buf = agent.call("mem.alloc", size=4096)
    t = agent.call("thread.start", op="aio.submit",
                 args={"ctx": ctx, "iocbs": [{"opcode": PREAD, "fd": r, "buf": buf,
                                              "nbytes": 4096}]})
    blocked = agent.call("thread.wait_blocked", thread=t, syscall="io_submit", states=["S"])
    assert blocked["state"] == "S" and blocked["syscall"] == "io_submit" and blocked["tid"]
    assert agent.call("thread.state", thread=t)["done"] is False
    agent.call("thread.signal", thread=t, signal_name="SIGUSR1")
    out = agent.call("thread.join", thread=t, timeout_ms=10_000)
    assert out["value"]["submitted"] == 1 and out["signals"] == 1, out
    (ev,) = agent.call("aio.getevents", ctx=ctx, min_nr=1, nr=1, timeout_ms=5000)
    assert ev["res"] == -errno.EINTR
    assert agent.call("agent.ping") == "pong"  # the handler kept the agent alive


def test_destroy_wakes_getevents_in_a_thread(agent: Agent) -> None:
    ctx = agent.call("aio.setup", nr_events=4)
    t = agent.call("thread.start", op="aio.getevents",
                 args={"ctx": ctx, "min_nr": 1, "nr": 1, "timeout_ms": 20_000})
    agent.call("thread.wait_blocked", thread=t, syscall="io_getevents")
    agent.call("aio.destroy", ctx=ctx)
    out = agent.call("thread.join", thread=t, timeout_ms=10_000)
    assert out["errno"] == "EINVAL" and out["elapsed_ns"] < 10_000_000_000


def test_thread_ops_refuse_and_time_out(agent: Agent) -> None:
    t = agent.call("thread.start", op="agent.ping")
    out = agent.call("thread.join", thread=t, timeout_ms=5000)
    assert out["value"] == "pong" and "signals" not in out
    t = agent.call("thread.start", op="aio.setup", args={"nr_events": 1})
    # It returns without ever blocking in io_destroy: ECHILD, its outcome kept for join.
    assert agent.errno_of("thread.wait_blocked", thread=t, syscall="io_destroy",
                       timeout_ms=2000) in ("ECHILD", "ETIMEDOUT")
    ctx = agent.call("thread.join", thread=t, timeout_ms=5000)["value"]
    agent.call("aio.destroy", ctx=ctx)
    r, _w = agent.call("fs.pipe")
    buf = agent.call("mem.alloc", size=16)
    t = agent.call("thread.start", op="fs.read", args={"fd": r, "length": 1})
    assert agent.errno_of("thread.join", thread=t, timeout_ms=100) == "ETIMEDOUT"
    assert "error" in agent.request("thread.signal", thread=t, signal_name="SIGKILL")
    assert "error" in agent.request("thread.wait_blocked", thread=t, syscall="read")
    assert agent.call("mem.free", handle=buf) is None
    left = agent.call("agent.reset")  # closing the pipe ends the read: nothing left running
    assert left["threads"] == 0, left


def test_ring_header_and_mapping(agent: Agent) -> None:
    ctx = agent.call("aio.setup", nr_events=8)
    hdr = agent.call("aio.ring", ctx=ctx)
    assert hdr["magic"] == 0xA10A10A1 and hdr["header_length"] == 32 and hdr["nr"] >= 16
    mapping = agent.call("mem.mapping", addr=ctx)
    assert mapping["start"] == ctx and "aio" in mapping["path"]
    assert agent.call("aio.ring_write", ctx=ctx, field="id", value=hdr["id"] + 1) == hdr["id"]
    assert agent.errno_of("aio.destroy", ctx=ctx) == "EINVAL"
    agent.call("aio.ring_write", ctx=ctx, field="id", value=hdr["id"])
    assert agent.call("aio.destroy", ctx=ctx) is None
    assert agent.call("mem.mapping", addr=ctx) is None
    # A ctx that is not mapped is refused by the op, not dereferenced.
    assert "no mapping" in agent.request("aio.ring", ctx=ctx)["error"]


def test_read_only_iocb_and_bad_buffers(agent: Agent, tmp_path: Path) -> None:
    ctx = agent.call("aio.setup", nr_events=8)
    fd = _file(agent, tmp_path)
    buf = agent.call("mem.alloc", size=4096)
    spec = {"opcode": PREAD, "fd": fd, "buf": buf, "nbytes": 4096}
    assert agent.errno_of("aio.submit", ctx=ctx, iocbs=[{**spec, "page": "readonly"}]) == "EFAULT"
    bad = {"opcode": PREAD, "fd": fd, "buf_addr": 0x1000, "nbytes": 4096}
    assert agent.call("aio.submit", ctx=ctx, iocbs=[bad])["submitted"] == 1
    (ev,) = agent.call("aio.getevents", ctx=ctx, min_nr=1, nr=1, timeout_ms=5000)
    assert ev["res"] == -errno.EFAULT
    kernel = {**bad, "buf_addr": 0xFFFF_8880_0000_0000}
    assert agent.errno_of("aio.submit", ctx=ctx, iocbs=[kernel]) == "EFAULT"
    assert agent.call("aio.free_iocbs") == 3  # the read-only page is unmapped with it


def test_cancel_result_argument(agent: Agent) -> None:
    ctx = agent.call("aio.setup", nr_events=4)
    r, _w = agent.call("fs.pipe")
    poll = {"opcode": "POLL", "fd": r, "events": ["POLLIN"]}
    a, b = agent.call("aio.submit", ctx=ctx, iocbs=[poll, poll])["iocbs"]
    res = agent.call("mem.alloc", size=64, fill=0xAB)
    assert agent.errno_of("aio.cancel", ctx=ctx, iocb=a, result=res) == "EINPROGRESS"
    assert agent.call("mem.read", handle=res) == "ab" * 64
    assert agent.errno_of("aio.cancel", ctx=ctx, iocb=b, result="fault") == "EINPROGRESS"
    assert len(agent.call("aio.getevents", ctx=ctx, min_nr=2, nr=2, timeout_ms=5000)) == 2


def test_affinity_is_restored_by_reset(agent: Agent) -> None:
    before = agent.call("thread.affinity")
    assert before == sorted(os.sched_getaffinity(0))
    assert agent.call("thread.affinity", cpus=[before[0]]) == before
    assert agent.call("thread.affinity") == [before[0]]
    assert agent.call("agent.reset")["affinity"] == 1
    assert agent.call("thread.affinity") == before


def test_pipe_flags_and_inode_flags(agent: Agent, tmp_path: Path) -> None:
    r, _w = agent.call("fs.pipe", flags=["O_NONBLOCK"])
    assert agent.errno_of("fs.read", fd=r, length=1) == "EAGAIN"
    fd = _file(agent, tmp_path)
    assert agent.call("fs.inode_flags", fd=fd) == []
    assert "error" in agent.request("fs.inode_flags", fd=fd, set_flags=["NOPE"])
    if os.geteuid() != 0:
        pytest.skip("setting the append-only attribute needs CAP_LINUX_IMMUTABLE")
    assert agent.call("fs.inode_flags", fd=fd, set_flags=["APPEND"]) == ["APPEND"]
    assert agent.call("fs.inode_flags", fd=fd, clear_flags=["APPEND"]) == []


def test_uring_state_getevents_and_dropped_entries(agent: Agent) -> None:
    ring = agent.call("uring.setup", entries=4, cq_entries=4)["ring"]
    st = agent.call("uring.state", ring=ring)
    assert st["cq_ready"] == 0 and st["sq_dropped"] == 0 and not st["cq_overflow_flag"]
    quick = agent.call("uring.getevents", ring=ring, min_complete=0, timeout_ms=5000)
    assert quick["ret"] == 0 and quick["elapsed_ns"] < 2_000_000_000
    wait = agent.call("uring.getevents", ring=ring, min_complete=1, timeout_ms=200)
    assert wait["ret"] == "ETIME" and wait["elapsed_ns"] >= 150_000_000
    assert agent.call("uring.submit", ring=ring,
                    sqes=[{"opcode": "NOP", "user_data": 1, "sq_index": 99}]) == 0
    assert agent.call("uring.state", ring=ring)["sq_dropped"] == 1
    for first in (1, 5):
        sqes = [{"opcode": "NOP", "user_data": first + i} for i in range(4)]
        assert agent.call("uring.submit", ring=ring, sqes=sqes) == 4
    full = agent.call("uring.state", ring=ring)
    assert full["cq_ready"] == 4 and full["cq_overflow_flag"] and full["cq_overflow"] == 0
    got = agent.call("uring.wait", ring=ring, nr=8, timeout_ms=5000)["cqes"]
    assert [c["user_data"] for c in got] == list(range(1, 9))


def test_pending_poll_holds_the_pipe_reader(agent: Agent) -> None:
    ctx = agent.call("aio.setup", nr_events=4)
    r, w = agent.call("fs.pipe")
    poll = {"opcode": "POLL", "fd": r, "events": ["POLLOUT"]}
    assert agent.call("aio.submit", ctx=ctx, iocbs=[poll])["submitted"] == 1
    agent.call("fs.close", fd=r)
    assert agent.call("fs.write", fd=w, data_hex="2a") == 1
    agent.call("aio.destroy", ctx=ctx)
    for _ in range(100):  # the cancelled POLL's fput may be deferred a tick
        if agent.request("fs.write", fd=w, data_hex="2a").get("errno") == "EPIPE":
            break
    else:
        pytest.fail("the writer never got EPIPE after io_destroy")
