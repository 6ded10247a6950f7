"""Fixtures for the AIO suites: built from the agent's ops only."""

from __future__ import annotations

import contextlib
import errno
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lab.vm.agent import Agent

SCRATCH = "/tmp/kernel-lab-aio-scratch"
# The agent names errnos by errno.errorcode, where EOPNOTSUPP's number reads ENOTSUP.
EOPNOTSUPP = errno.errorcode[errno.EOPNOTSUPP]


def pytest_itemcollected(item: pytest.Item) -> None:
    """The suite tests CONFIG_AIO's syscalls: every test of it requires the option, so a
    kernel built without it SKIPs them (before their fixtures), not FAILs.  Said once here
    for the suite, as a module's marker says it (lab.run.keys.required_config reads the
    item's markers: this one comes after the test's own, where a module's would)."""
    item.add_marker(pytest.mark.requires_config("AIO"))


@pytest.fixture
def ctx(agent: Agent) -> Iterator[int]:
    """A fresh AIO context (8 events), destroyed afterwards unless the test did."""
    handle = agent.call("aio.setup", nr_events=8)
    yield handle
    agent.errno_of("aio.destroy", ctx=handle)
    agent.call("aio.free_iocbs")


@pytest.fixture
def scratch(agent: Agent) -> Iterator[int]:
    """A read-write scratch file of 64 KiB in the guest's /tmp."""
    fd = agent.call("fs.open", path=SCRATCH, flags=["O_RDWR", "O_CREAT", "O_TRUNC"])
    agent.call("fs.ftruncate", fd=fd, length=64 * 1024)
    yield fd
    agent.call("fs.close", fd=fd)
    agent.errno_of("fs.unlink", path=SCRATCH)


@pytest.fixture
def buf(agent: Agent) -> Iterator[int]:
    """A page-aligned 4 KiB buffer."""
    handle = agent.call("mem.alloc", size=4096)
    yield handle
    agent.call("mem.free", handle=handle)


@pytest.fixture
def pipe(agent: Agent) -> Iterator[list[int]]:
    """An empty pipe: a POLL for POLLIN on its read end stays pending."""
    fds = agent.call("fs.pipe")
    yield fds
    for fd in fds:
        agent.errno_of("fs.close", fd=fd)


def poll(fd: int, events: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """An IOCB_CMD_POLL spec (POLLIN unless ``events`` says otherwise)."""
    return {"opcode": "POLL", "fd": fd, "events": events or ["POLLIN"], **extra}


def wait_epipe(agent: Agent, wfd: int, *, seconds: float = 5.0) -> dict[str, Any]:
    """Write one byte to ``wfd`` until it fails with EPIPE (the pipe has lost its last reader).

    The last reference to a file may be dropped by a kernel worker (a cancelled POLL's
    completion), whose fput is deferred a tick: so a few tries, bounded.  A reference
    that leaked never goes: then the result says ``epipe`` False after ``seconds``.
    """
    started = time.monotonic()
    tries = 0
    while True:
        tries += 1
        err = agent.errno_of("fs.write", fd=wfd, data_hex="2a")
        if err == "EPIPE":
            return {"epipe": True, "tries": tries,
                    "seconds": round(time.monotonic() - started, 3)}
        if err is not None:
            raise AssertionError(f"write to the pipe failed with {err}, not EPIPE")
        if time.monotonic() - started > seconds:
            return {"epipe": False, "tries": tries, "seconds": seconds}
        time.sleep(0.05)


class SlowReads:
    """``n`` O_DIRECT reads of the throttled NVMe (25 IOPS) in one context, with an eventfd
    that counts their completions: I/O that stays in flight for about n/25 s."""

    def __init__(self, agent: Agent, device: str, n: int) -> None:
        self.agent, self.n = agent, n
        self.fd = agent.call("fs.open", path=device, flags=["O_RDONLY", "O_DIRECT"])
        self.efd = agent.call("fs.eventfd", initval=0, flags=["EFD_NONBLOCK"])
        self.bufs = [agent.call("mem.alloc", size=4096) for _ in range(n)]
        self.ctx = agent.call("aio.setup", nr_events=n)
        self.done = 0

    def submit(self) -> list[int]:
        reads = [{"opcode": "PREAD", "fd": self.fd, "buf": b, "nbytes": 4096,
                  "offset": i * (1 << 20), "flags": ["RESFD"], "resfd": self.efd}
                 for i, b in enumerate(self.bufs)]
        got = self.agent.call("aio.submit", ctx=self.ctx, iocbs=reads)
        assert got["submitted"] == self.n, got
        ids: list[int] = got["iocbs"]
        return ids

    def completed(self) -> int:
        """Completions so far (the eventfd's count, accumulated across reads)."""
        # EAGAIN: nothing completed since the last look.
        with contextlib.suppress(OSError):
            self.done += int(self.agent.call("fs.eventfd_read", fd=self.efd))
        return self.done


@pytest.fixture
def slow_reads(agent: Agent, nvme: dict[str, Any]) -> Any:
    """``slow_reads(n)``: a SlowReads on the "slow" NVMe; the agent reset cleans it up."""
    def make(n: int) -> SlowReads:
        return SlowReads(agent, nvme["slow"].ns, n)
    return make
