"""agent.* operations beyond the handshake: reset between tests.

``agent.reset`` closes what a test left behind, so that no test sees the last
one's contexts, rings, memory or files: io_uring rings and buffer rings, AIO
contexts (io_destroy: pending POLLs are cancelled, in-flight I/O is waited
for), iocbs, fds opened by fs.* ops, threads of thread.start (joined), scratch
ext4 mounts, the CPU affinity thread.affinity changed, and memory from mem.alloc.
It returns how many of each it found, which the lab keeps in the test's record.
Each area that holds objects exports its own steps (``RESET``, guest/objects.py, which
also orders the phases); reset runs them all by phase, naming no area.  Only the areas a
test's agent has imported (guest/registry.py imports each at its first call) can hold
anything: reset looks at those alone and imports none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from guest import memory, objects
from guest.objects import ResetStep
from guest.registry import areas, loaded
from guest.state import MEMS


def agent_reset() -> dict[str, int]:
    steps: list[tuple[str, ResetStep]] = []
    for area in areas():
        module = loaded(area)
        steps += [(area, step) for step in getattr(module, "RESET", ())]
    left = dict.fromkeys(objects.KINDS, 0)
    # By phase; within one, by area (sorted is stable and areas() is sorted).
    for _, (_, run) in sorted(steps, key=lambda s: s[1][0]):
        left.update(run())
    return left


def _free_buffers() -> dict[str, int]:
    for handle, mem in MEMS.items():  # every area's buffers (guest/state.py)
        memory.free(mem)
        MEMS.pop(handle)
    return {}


# The memory table is every area's (guest/state.py), so its steps are the agent's own.
RESET: tuple[ResetStep, ...] = (
    (objects.COUNT_BUFFERS, lambda: {"mems": len(MEMS)}),
    (objects.BUFFERS, _free_buffers),
)

OPS: dict[str, Callable[..., Any]] = {"agent.reset": agent_reset}
