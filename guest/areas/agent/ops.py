"""agent.* operations beyond the handshake: reset between tests.

``agent.reset`` closes what a test left behind, so that no test sees the last
one's contexts, rings, memory or files: io_uring rings and buffer rings, AIO
contexts (io_destroy: pending POLLs are cancelled, in-flight I/O is waited
for), iocbs, fds opened by fs.* ops, threads of thread.start (joined), scratch
ext4 mounts, the CPU affinity thread.affinity changed, and memory from mem.alloc.
It returns how many of each it found, which the lab keeps in the test's record.
Each area's own hooks (uring: close_all; fs: close_all, umount_all; thread: join_all,
restore_affinity; aio: destroy_all, free_iocbs) are called here, in the order their
objects depend on each other.  Only the areas a test's agent has imported
(guest/registry.py imports each at its first call) can hold anything: reset looks at
those alone and imports none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from guest import memory
from guest.registry import loaded
from guest.state import MEMS


def agent_reset() -> dict[str, int]:
    uring, thread, fs, aio = loaded("uring"), loaded("thread"), loaded("fs"), loaded("aio")
    left = {"rings": int(uring.uring_close_all()) if uring else 0,
            "contexts": len(aio.CTXS) if aio else 0, "fds": len(fs.FDS) if fs else 0,
            "mems": len(MEMS)}
    # Files first: a thread.start op blocked on one of them (a pipe read inside
    # io_submit) returns once it is closed, and only then can its context be destroyed
    # (io_destroy would wait for that read uninterruptibly).
    if fs:
        fs.close_all()
    # Threads still running are reported; they cannot be killed.
    left["threads"] = int(thread.join_all(5.0)) if thread else 0
    left["mounts"] = int(fs.umount_all()) if fs else 0  # files closed
    if aio:
        aio.destroy_all()
    if thread:
        left["threads"] = int(thread.join_all(1.0))  # an io_getevents woken by the destroy
    left["iocbs"] = int(aio.aio_free_iocbs()) if aio else 0
    left["affinity"] = int(thread.restore_affinity()) if thread else 0
    for handle, mem in MEMS.items():  # every area's buffers (guest/state.py)
        memory.free(mem)
        MEMS.pop(handle)
    return left


OPS: dict[str, Callable[..., Any]] = {"agent.reset": agent_reset}
