"""A context belongs to the process that created it: a forked child cannot use its parent's.

Whether fork copies the ring mapping depends on the kernel: 6.1 and 6.12 copy it, 7.2's
aio_ring_mmap_prepare marks it VM_DONTCOPY (each run records which, as an observation).
Where it is not copied the child maps a copy of the parent's ring header at the ctx
address first: either way the kernel reads a valid ring id and must refuse the context
because the child's mm has no such context, not merely because nothing is mapped there.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest

from lab.vm.agent import Agent
from scenarios.aio.conftest import poll

RING_FIELDS = ("id", "nr", "head", "tail", "magic", "compat_features", "incompat_features",
               "header_length")


def _in_child(agent: Agent, ctx: int, op: str, args: dict[str, Any], record: Any,
              observed: Any) -> dict[str, Any]:
    """``op`` in a forked child of the agent (creds.run, credentials unchanged), with the
    parent's ring header readable at ``ctx`` in the child."""
    hdr = agent.call("aio.ring", ctx=ctx)
    header = struct.pack("<8I", *(hdr[f] for f in RING_FIELDS)).hex()
    reply = agent.call("creds.run", call_timeout=120, steps=[
        {"op": "mem.mapping", "args": {"addr": ctx}},                   # 0: inherited?
        {"op": "mem.alloc", "args": {"size": 4096, "at": ctx}},         # 1: EEXIST if so
        {"op": "mem.write", "args": {"handle": {"$": 1}, "data_hex": header}},
        {"op": "aio.ring", "args": {"ctx": ctx}},                        # 3: what it reads
        {"op": op, "args": args},
    ])
    inherited, _, _, seen, step = reply["steps"]
    record("child", {"inherited_mapping": inherited.get("value"), "header_seen": seen})
    observed("fork " + ("copies" if inherited.get("value") else "does not copy")
             + " the AIO ring mapping into the child")
    assert seen.get("value") == hdr, f"the child cannot read the parent's header: {seen}"
    return dict(step)


@pytest.mark.parametrize("syscall", [
    pytest.param(name, marks=pytest.mark.claim(f"io_{name}.other_process"), id=name)
    for name in ("submit", "cancel", "destroy")
])
def test_parents_context_is_einval_in_child(agent: Agent, ctx: int, pipe: list[int],
                                            syscall: str, record: Any, observed: Any) -> None:
    pending = agent.call("aio.submit", ctx=ctx, iocbs=[poll(pipe[0])])["iocbs"][0]
    args: dict[str, Any] = {
        "submit": {"ctx": ctx, "iocbs": [poll(pipe[0])]},
        "cancel": {"ctx": ctx, "iocb": pending},
        "destroy": {"ctx": ctx},
    }[syscall]
    step = _in_child(agent, ctx, f"aio.{syscall}", args, record, observed)
    assert step == {"errno": "EINVAL"}, step
    # The parent's context is untouched: its POLL is still pending, cancellable, and
    # the context is destroyed normally.
    assert agent.call("aio.getevents", ctx=ctx, min_nr=0, nr=1, timeout_ms=0) == []
    assert agent.errno_of("aio.cancel", ctx=ctx, iocb=pending) == "EINPROGRESS"
    (event,) = agent.call("aio.getevents", ctx=ctx, min_nr=1, nr=1, timeout_ms=10_000)
    assert event["iocb"] == pending
    assert agent.errno_of("aio.destroy", ctx=ctx) is None
