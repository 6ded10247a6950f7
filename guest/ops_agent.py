"""agent.* operations beyond the handshake: reset between tests.

``agent.reset`` closes what a test left behind, so that no test sees the last
one's contexts, rings, memory or files: io_uring rings and buffer rings, AIO
contexts (io_destroy: pending POLLs are cancelled, in-flight I/O is waited
for), iocbs, fds opened by fs.* ops, threads of thread.start (joined), scratch
ext4 mounts, the CPU affinity thread.affinity changed, and memory from mem.alloc.
It returns how many of each it found, which the lab keeps in the test's record.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

from guest import memory, native, ops_aio, ops_scratchfs, ops_thread, ops_uring
from guest.registry import register
from guest.state import CTXS, FDS, MEMS


def agent_reset() -> dict[str, int]:
    left = {"rings": ops_uring.uring_close_all(), "contexts": len(CTXS), "fds": len(FDS),
            "mems": len(MEMS)}
    # Files first: a thread.start op blocked on one of them (a pipe read inside
    # io_submit) returns once it is closed, and only then can its context be destroyed
    # (io_destroy would wait for that read uninterruptibly).
    for fd in sorted(FDS):
        with contextlib.suppress(OSError):
            os.close(fd)
    FDS.clear()
    left["threads"] = ops_thread.join_all(5.0)  # still running: reported, cannot be killed
    left["mounts"] = ops_scratchfs.umount_all()  # its files are closed now
    lib = native.lib()
    for ctx in sorted(CTXS):
        # The context may be gone already (destroyed by a race loop): EINVAL is fine.
        lib.lab_io_destroy(native.ffi().cast("aio_context_t", ctx))
    CTXS.clear()
    left["threads"] = ops_thread.join_all(1.0)  # an io_getevents woken by the destroy
    left["iocbs"] = ops_aio.aio_free_iocbs()
    left["affinity"] = int(ops_thread.restore_affinity())
    for handle, mem in MEMS.items():
        memory.free(mem)
        MEMS.pop(handle)
    return left


OPS: dict[str, Callable[..., Any]] = {"agent.reset": agent_reset}
register(OPS)
