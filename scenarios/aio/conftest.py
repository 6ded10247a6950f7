"""Fixtures for the AIO suites: built from the agent's ops only."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

SCRATCH = "/tmp/kernel-lab-aio-scratch"


@pytest.fixture
def ctx(agent: Any) -> Iterator[int]:
    """A fresh AIO context (8 events), destroyed afterwards unless the test did."""
    handle = agent.call("aio.setup", nr_events=8)
    yield handle
    agent.errno_of("aio.destroy", ctx=handle)
    agent.call("aio.free_iocbs")


@pytest.fixture
def scratch(agent: Any) -> Iterator[int]:
    """A read-write scratch file of 64 KiB in the guest's /tmp."""
    fd = agent.call("fs.open", path=SCRATCH, flags=["O_RDWR", "O_CREAT", "O_TRUNC"])
    agent.call("fs.ftruncate", fd=fd, length=64 * 1024)
    yield fd
    agent.call("fs.close", fd=fd)
    agent.errno_of("fs.unlink", path=SCRATCH)


@pytest.fixture
def buf(agent: Any) -> Iterator[int]:
    """A page-aligned 4 KiB buffer."""
    handle = agent.call("mem.alloc", size=4096)
    yield handle
    agent.call("mem.free", handle=handle)


@pytest.fixture
def pipe(agent: Any) -> Iterator[list[int]]:
    """An empty pipe: a POLL for POLLIN on its read end stays pending."""
    fds = agent.call("fs.pipe")
    yield fds
    for fd in fds:
        agent.errno_of("fs.close", fd=fd)
