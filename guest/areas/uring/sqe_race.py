"""uring.sqe_double_read: a live SQE rewritten while the kernel submits it (uring_race.c).

The io_uring review of 2019 found that the submission path read an SQE's
opcode twice, inline and again from async work, so that userspace could turn
a READV that had taken a file reference into a NOP that dropped the request
without it.  The op runs the C loop (one thread submits READVs of an empty
O_NONBLOCK pipe, another rewrites opcode and fd meanwhile), closes every fd,
and then checks that the files really were released: the pipe's writer must
get EPIPE, and the scratch tmpfs holding the second fd's FIFO must unmount.
Both are asked again until ``release_ms`` passes: a ring's teardown runs in
a kernel worker after its fd is closed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

from guest import native
from guest.areas.race.ops import NS, opts_mask, race_result
from guest.state import SLOWDOWN

POLL_S = 0.02


def _errno_name(code: int) -> str | None:
    return errno.errorcode.get(code, str(code)) if code else None


def _until_epipe(fd: int, deadline: float) -> dict[str, Any]:
    """Write to a pipe until its last reader is gone (EPIPE) or the deadline passes."""
    started = time.monotonic()
    while True:
        try:
            os.write(fd, b"x")
        except BrokenPipeError:
            return {"epipe": True, "ms": round((time.monotonic() - started) * 1000, 1)}
        except BlockingIOError:
            pass  # full: a reader still holds it, and nobody drains it
        if time.monotonic() >= deadline:
            return {"epipe": False, "ms": round((time.monotonic() - started) * 1000, 1)}
        time.sleep(POLL_S)


def _until_unmounted(path: str, deadline: float) -> dict[str, Any]:
    """umount, asked again while EBUSY until the deadline; then detached, and said so."""
    lib = native.lib()
    started = time.monotonic()
    target = path.encode()
    while True:
        ret = int(lib.lab_umount2(target, 0))
        if ret == 0 or -ret != errno.EBUSY or time.monotonic() >= deadline:
            break
        time.sleep(POLL_S)
    out = {"ok": ret == 0, "errno": _errno_name(-ret),
           "ms": round((time.monotonic() - started) * 1000, 1)}
    if ret != 0:
        # Never leave a busy mount behind for the next test: detach it lazily.
        lib.lab_umount2(target, int(lib.MNT_DETACH))
    return out


def sqe_double_read(mode: str = "pipe", rounds: int = 2000, seconds: float = 20.0,
                    lead: int = 0, linger_us: float = 200.0, wait_ms: float = 5000.0,
                    release_ms: float = 10000.0, opts: list[str] | None = None,
                    rewrite: bool = True, hold_fds: bool = False) -> dict[str, Any]:
    """Race a rewriter against the submission of READVs; then check every file was released.

    ``mode`` "pipe": the ring is entered for each SQE, every other one with
    IOSQE_ASYNC (io-wq), the rest retried by poll; "sqpoll": an SQPOLL ring's
    kernel thread takes the SQEs.  ``lead``: NOPs in the batch before the
    SQE, so the kernel reads it later.  ``linger_us``: how long the rewriting
    goes on after the kernel consumed the SQE, while the request is in async
    work.  Two controls, for the lab's own tests: ``rewrite=False`` leaves the
    SQE as written (every completion must say so), ``hold_fds=True`` keeps a
    duplicate of each read end open through the release checks (they must
    then fail).
    """
    if mode not in ("pipe", "sqpoll"):
        raise ValueError(f"unknown mode {mode!r} (valid: pipe, sqpoll)")
    how = opts_mask(opts)
    ffi, lib = native.ffi(), native.lib()
    scratch = tempfile.mkdtemp(prefix="lab-sqe-")
    try:
        native.check(int(lib.lab_mount(b"lab-sqe", scratch.encode(), b"tmpfs", 0,
                                       b"size=1m")))
    except OSError:
        os.rmdir(scratch)
        raise
    fds: list[int] = []
    held: list[int] = []  # the hold_fds control's duplicates, closed last
    try:
        fifo = os.path.join(scratch, "fifo")
        os.mkfifo(fifo)
        rd_b = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        fds.append(rd_b)
        wr_b = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        fds.append(wr_b)
        rd_a, wr_a = os.pipe2(os.O_NONBLOCK)
        fds += [rd_a, wr_a]
        out = ffi.new("struct sqe_race_result *")
        native.check(int(lib.uring_sqe_race(
            rd_a, wr_a, rd_b, wr_b, mode == "sqpoll", rewrite, lead, rounds, int(seconds * NS),
            int(linger_us * 1000), int(wait_ms * SLOWDOWN * 1e6), how, out)))
        got = race_result(out, rounds="rounds")
        # Every fd the kernel was given is closed (the ring by the C loop): now the
        # files must go.  The writers stay open to tell.
        if hold_fds:
            held = [os.dup(rd_a), os.dup(rd_b)]
        for fd in (rd_a, rd_b):
            os.close(fd)
            fds.remove(fd)
        deadline = time.monotonic() + release_ms * SLOWDOWN / 1000
        got["pipe_release"] = _until_epipe(wr_a, deadline)
        got["fifo_release"] = _until_epipe(wr_b, deadline)
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        umount = _until_unmounted(scratch, time.monotonic() + release_ms * SLOWDOWN / 1000)
        for fd in held:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.rmdir(scratch)
    got["umount"] = umount
    got["mode"] = mode
    code = got.pop("first_unexplained")
    got["first_unexplained"] = None if code == 0 else "no completion" if code == 1 else \
        _errno_name(-code) if code < 0 else f"res {code}"
    got["sqpoll"] = bool(got["sqpoll"])
    return got


OPS: dict[str, Callable[..., Any]] = {"uring.sqe_double_read": sqe_double_read}
