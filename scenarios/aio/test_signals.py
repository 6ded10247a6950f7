"""Syscalls that wait: a signal into io_submit's blocking read, and into io_destroy's wait.

The syscall runs in a thread of the agent (thread.start), which the test watches in
the kernel (/proc/self/task/TID: state and current syscall) and signals alone
(thread.signal: SIGUSR1 with a no-op handler, no SA_RESTART).
"""

from __future__ import annotations

import errno
import time
from typing import Any

import pytest

from lab.vm.agent import Agent

# On the throttled NVMe (25 IOPS): about 1.6 s of I/O in flight, time enough to watch.
SLOW_READS = 40
JOIN_MS = 120_000


@pytest.mark.claim("io_submit.signal_eintr")
def test_signal_into_blocking_pipe_read(agent: Agent, ctx: int, pipe: list[int], buf: int,
                                        record: Any) -> None:
    r, _w = pipe  # blocking, empty, and a writer stays open: the read waits in io_submit
    read = {"opcode": "PREAD", "fd": r, "buf": buf, "nbytes": 4096}
    t = agent.call("thread.start", op="aio.submit", args={"ctx": ctx, "iocbs": [read]})
    blocked = agent.call("thread.wait_blocked", thread=t, syscall="io_submit", states=["S"])
    record("blocked", blocked)
    agent.call("thread.signal", thread=t, signal_name="SIGUSR1")
    out = agent.call("thread.join", thread=t, timeout_ms=30_000)
    record("join", out)
    # The syscall was not interrupted: it submitted the one iocb.
    assert out.get("value", out)["submitted"] == 1, out
    (event,) = agent.call("aio.getevents", ctx=ctx, min_nr=1, nr=1, timeout_ms=10_000)
    assert event["res"] == -errno.EINTR, event


def _destroy_in_thread(agent: Agent, reads: Any) -> tuple[int, dict[str, Any]]:
    """Submit the slow reads, start io_destroy in a thread, wait until it sleeps in D."""
    reads.submit()
    t = agent.call("thread.start", op="aio.destroy", args={"ctx": reads.ctx})
    blocked = agent.call("thread.wait_blocked", thread=t, syscall="io_destroy", states=["D"],
                         timeout_ms=20_000)
    return t, blocked


@pytest.mark.claim("io_destroy.uninterruptible")
def test_signal_does_not_end_destroy_wait(agent: Agent, slow_reads: Any, record: Any) -> None:
    reads = slow_reads(SLOW_READS)
    t, _ = _destroy_in_thread(agent, reads)
    at_signal = reads.completed()
    agent.call("thread.signal", thread=t, signal_name="SIGUSR1")
    time.sleep(0.2)
    after = agent.call("thread.state", thread=t)
    out = agent.call("thread.join", thread=t, timeout_ms=JOIN_MS, call_timeout=JOIN_MS / 1000 + 60)
    at_return = reads.completed()
    record("destroy", {"completed_at_signal": at_signal, "state_after_signal": after,
                       "join": out, "completed_at_return": at_return})
    # The signal came while reads were still in flight, or nothing was tested.
    assert at_signal < SLOW_READS, "every read completed before the signal"
    assert not after["done"] and after["state"] == "D", after
    assert "value" in out and out["value"] is None, out  # io_destroy returned 0, not EINTR
    assert at_return == SLOW_READS, f"{at_return} of {SLOW_READS} completed at return"


@pytest.mark.claim("io_destroy.d_state")
def test_destroy_waits_in_d_state(agent: Agent, slow_reads: Any, record: Any) -> None:
    reads = slow_reads(SLOW_READS)
    t, blocked = _destroy_in_thread(agent, reads)
    pending = SLOW_READS - reads.completed()
    samples = [agent.call("thread.state", thread=t) for _ in range(3)]
    out = agent.call("thread.join", thread=t, timeout_ms=JOIN_MS, call_timeout=JOIN_MS / 1000 + 60)
    record("destroy", {"blocked": blocked, "samples": samples, "pending": pending, "join": out})
    assert pending > 0, "every read completed before io_destroy slept"
    assert blocked["state"] == "D" and blocked["syscall"] == "io_destroy", blocked
    # Every look while it still waited saw it uninterruptible.
    waiting = [s for s in samples if not s["done"]]
    assert waiting and all(s["state"] == "D" for s in waiting), samples
    assert "value" in out, out


@pytest.mark.claim("io_destroy.aio_nr_before_wait")
def test_aio_nr_lowered_before_the_wait(agent: Agent, slow_reads: Any, record: Any) -> None:
    before = int(agent.call("sys.read_text", path="/proc/sys/fs/aio-nr"))
    reads = slow_reads(SLOW_READS)
    with_ctx = int(agent.call("sys.read_text", path="/proc/sys/fs/aio-nr"))
    t, _ = _destroy_in_thread(agent, reads)
    during = int(agent.call("sys.read_text", path="/proc/sys/fs/aio-nr"))
    still = agent.call("thread.state", thread=t)
    agent.call("thread.join", thread=t, timeout_ms=JOIN_MS, call_timeout=JOIN_MS / 1000 + 60)
    record("aio_nr", {"before": before, "with_ctx": with_ctx, "during_wait": during,
                      "still_waiting": still})
    assert with_ctx - before == SLOW_READS
    assert not still["done"], "io_destroy had returned before aio-nr was read"
    assert during == before, "aio-nr not lowered while io_destroy waits"
