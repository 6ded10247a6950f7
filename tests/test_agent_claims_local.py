"""The plumbing of the agent's ops behind the claims suites, against the host kernel.

The claims themselves are the scenarios' to check: the quick tier (``nox -s quick``,
lab.run.quick) runs them on the host's kernel, a run in a guest on every kernel.  What is
here is the ops' own behaviour that no scenario asserts (thread.* watching and signalling
a syscall, the ring header, io_cancel's result argument, affinity and inode flags).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab.vm.agent import Agent

PREAD = "PREAD"


def _file(agent: Agent, tmp_path: Path, size: int = 65536) -> int:
    fd: int = agent.call("fs.open", path=str(tmp_path / "f"), flags=["O_RDWR", "O_CREAT"])
    agent.call("fs.ftruncate", fd=fd, length=size)
    return fd


def test_a_signal_into_a_threads_blocking_call_is_counted(agent: Agent) -> None:
    """thread.* plumbing: where the thread blocks, the signal delivered and counted, the
    agent alive after it (what the kernel does with the read: scenarios/aio/test_signals)."""
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
    assert out["signals"] == 1, out
    assert agent.call("agent.ping") == "pong"  # the handler kept the agent alive


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
    """aio.ring reads the ring's header, aio.ring_write returns the old value (what the
    kernel makes of a changed id: scenarios/aio/test_destroy_edges)."""
    ctx = agent.call("aio.setup", nr_events=8)
    hdr = agent.call("aio.ring", ctx=ctx)
    assert hdr["magic"] == 0xA10A10A1 and hdr["header_length"] == 32 and hdr["nr"] >= 16
    assert agent.call("aio.ring_write", ctx=ctx, field="id", value=hdr["id"] + 1) == hdr["id"]
    assert agent.call("aio.ring_write", ctx=ctx, field="id", value=hdr["id"]) == hdr["id"] + 1
    assert agent.call("aio.destroy", ctx=ctx) is None
    # A ctx that is not mapped is refused by the op, not dereferenced.
    assert "no mapping" in agent.request("aio.ring", ctx=ctx)["error"]


def test_free_iocbs_counts_a_read_only_pages_iocb(agent: Agent, tmp_path: Path) -> None:
    """aio.submit's iocb in a read-only page is kept, and freed (unmapped) with the rest
    (what the kernel makes of it: scenarios/aio/test_submit_efault)."""
    ctx = agent.call("aio.setup", nr_events=8)
    fd = _file(agent, tmp_path)
    buf = agent.call("mem.alloc", size=4096)
    spec = {"opcode": PREAD, "fd": fd, "buf": buf, "nbytes": 4096}
    agent.errno_of("aio.submit", ctx=ctx, iocbs=[{**spec, "page": "readonly"}])
    assert agent.call("aio.submit", ctx=ctx, iocbs=[spec])["submitted"] == 1
    assert agent.call("aio.free_iocbs") == 2


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


