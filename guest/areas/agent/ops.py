"""agent.* operations beyond the handshake: reset between tests.

``agent.reset`` closes what a test left behind, so that no test sees the last
one's contexts, rings, memory or files: io_uring rings and buffer rings, AIO
contexts (io_destroy: pending POLLs are cancelled, in-flight I/O is waited
for), iocbs, fds opened by fs.* ops, threads of thread.start (joined), scratch
ext4 mounts, the CPU affinity thread.affinity changed, and memory from mem.alloc.
It returns how many of each it found, which the lab keeps in the test's record.
Each area's own hook (uring: close_all, thread: join_all and restore_affinity, fs:
reset, aio: free_iocbs) is called here, in the order their objects depend on each
other.  Only the areas a test's agent has imported (guest/registry.py imports each at
its first call) can hold anything: reset looks at those alone and imports none.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

from guest import memory, native
from guest.registry import loaded
from guest.state import CTXS, FDS, MEMS


def agent_reset() -> dict[str, int]:
    ops_uring, ops_thread = loaded("uring"), loaded("thread")
    ops_fs, ops_aio = loaded("fs"), loaded("aio")
    left = {"rings": int(ops_uring.uring_close_all()) if ops_uring else 0,
            "contexts": len(CTXS), "fds": len(FDS), "mems": len(MEMS)}
    # Files first: a thread.start op blocked on one of them (a pipe read inside
    # io_submit) returns once it is closed, and only then can its context be destroyed
    # (io_destroy would wait for that read uninterruptibly).
    for fd in sorted(FDS):
        with contextlib.suppress(OSError):
            os.close(fd)
    FDS.clear()
    # Threads still running are reported; they cannot be killed.
    left["threads"] = int(ops_thread.join_all(5.0)) if ops_thread else 0
    left["mounts"] = int(ops_fs.reset()) if ops_fs else 0  # files closed
    lib = native.lib()
    for ctx in sorted(CTXS):
        # The context may be gone already (destroyed by a race loop): EINVAL is fine.
        lib.lab_io_destroy(native.ffi().cast("aio_context_t", ctx))
    CTXS.clear()
    if ops_thread:
        left["threads"] = int(ops_thread.join_all(1.0))  # an io_getevents woken by the destroy
    left["iocbs"] = int(ops_aio.aio_free_iocbs()) if ops_aio else 0
    left["affinity"] = int(ops_thread.restore_affinity()) if ops_thread else 0
    for handle, mem in MEMS.items():
        memory.free(mem)
        MEMS.pop(handle)
    return left


OPS: dict[str, Callable[..., Any]] = {"agent.reset": agent_reset}
