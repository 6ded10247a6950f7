"""Every AIO syscall that takes a ctx_id rejects a bad one with EINVAL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from lab.vm.agent import Agent

NEVER_CREATED = 0x7F0000DEAD000


def _bad_ctx(agent: Agent, kind: str) -> int:
    if kind == "zero":
        return 0
    if kind == "never-created":
        return NEVER_CREATED
    dead = agent.call("aio.setup", nr_events=4)
    agent.call("aio.destroy", ctx=dead)
    return int(dead)


def _poll(fd: int) -> dict[str, Any]:
    return {"opcode": "POLL", "fd": fd, "events": ["POLLIN"]}


def _cancel_args(agent: Agent, ctx: int, fd: int) -> dict[str, Any]:
    # io_cancel reads aio_key before it looks the context up, so give it a readable
    # iocb whose key the kernel set to KIOCB_KEY (0): only the ctx is wrong.
    helper = agent.call("aio.setup", nr_events=1)
    iocb = agent.call("aio.submit", ctx=helper, iocbs=[_poll(fd)])["iocbs"][0]
    agent.call("aio.destroy", ctx=helper)
    return {"ctx": ctx, "iocb": iocb}


CALLS: dict[str, tuple[str, Callable[[Any, int, int], dict[str, Any]]]] = {
    "submit": ("aio.submit", lambda agent, ctx, fd: {"ctx": ctx, "iocbs": [_poll(fd)]}),
    "getevents": ("aio.getevents",
                  lambda agent, ctx, fd: {"ctx": ctx, "min_nr": 0, "nr": 1, "timeout_ms": 0}),
    "cancel": ("aio.cancel", _cancel_args),
    "destroy": ("aio.destroy", lambda agent, ctx, fd: {"ctx": ctx}),
}

CASES = [
    pytest.param(syscall, kind, marks=pytest.mark.claim(f"io_{syscall}.bad_ctx"),
                 id=f"{syscall}-{kind}")
    for syscall in CALLS
    for kind in ("zero", "never-created", "destroyed")
]


@pytest.mark.parametrize(("syscall", "kind"), CASES)
def test_invalid_ctx_is_einval(agent: Agent, pipe: list[int], syscall: str, kind: str) -> None:
    op, make_args = CALLS[syscall]
    ctx = _bad_ctx(agent, kind)
    args = make_args(agent, ctx, pipe[0])
    try:
        assert agent.errno_of(op, **args) == "EINVAL"
    finally:
        agent.call("aio.free_iocbs")
