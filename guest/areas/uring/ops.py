"""uring.* operations: rings, submissions, timed waits, registered and provided buffers."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Callable
from typing import Any

from guest import memory, native, objects
from guest.areas.uring import sqe_race
from guest.areas.uring.ring import BufRing, Ring, proc_status_kb
from guest.objects import ResetStep, Table
from guest.state import MEMS

RINGS: Table[Ring] = Table("ring")
BUFRINGS: Table[BufRing] = Table("buffer ring")


def _addr_of(handle: int) -> int:
    return MEMS.get(handle).addr


def uring_setup(entries: int = 8, flags: list[str] | int | None = None,
                cq_entries: int = 0) -> dict[str, Any]:
    """io_uring_setup + mmap; the value carries the handle and the kernel's params."""
    ring = Ring(entries, flags, cq_entries)
    return {"ring": RINGS.add(ring), **ring.params}


def uring_close(ring: int) -> None:
    RINGS.pop(ring).close()


def uring_submit(ring: int, sqes: list[dict[str, Any]]) -> int:
    """Fill one SQE per description and io_uring_enter them; returns the kernel's count.

    ``sq_index`` in a description overrides the SQ array slot that points at its SQE
    (an index past sq_entries makes the kernel drop the entry).
    """
    r = RINGS.get(ring)
    for spec in sqes:
        r.prep(spec, _addr_of)
        if "sq_index" in spec:
            r.set_last_index(int(spec["sq_index"]))
    return r.submit()


def uring_state(ring: int) -> dict[str, Any]:
    """SQ/CQ indices, SQ flags, sq_dropped, cq_overflow and the CQEs ready (not reaped)."""
    return RINGS.get(ring).state()


def uring_getevents(ring: int, min_complete: int, timeout_ms: int) -> dict[str, Any]:
    """One GETEVENTS enter waiting for ``min_complete`` (bounded); ret, elapsed, ready."""
    if timeout_ms <= 0:
        raise ValueError("every wait needs a positive timeout")
    return RINGS.get(ring).getevents(min_complete, timeout_ms)


def uring_wait(ring: int, nr: int = 1, timeout_ms: int = 5000) -> dict[str, Any]:
    """Up to ``nr`` CQEs within ``timeout_ms``: ``{"cqes": [...], "timed_out": bool}``."""
    if timeout_ms <= 0:
        raise ValueError("every wait needs a positive timeout")
    return RINGS.get(ring).wait(nr, timeout_ms)


def uring_run(ring: int, sqes: list[dict[str, Any]], timeout_ms: int = 5000) -> dict[str, Any]:
    """Submit and wait for as many CQEs as SQEs (bounded by ``timeout_ms``)."""
    submitted = uring_submit(ring, sqes)
    out = uring_wait(ring, max(submitted, 1) if sqes else 0, timeout_ms) if sqes else {
        "cqes": [], "timed_out": False}
    return {"submitted": submitted, **out}


def uring_register_buffers(ring: int, bufs: list[int]) -> int:
    """IORING_REGISTER_BUFFERS with one iovec per mem handle."""
    ffi, lib = native.ffi(), native.lib()
    iov = ffi.new("struct iovec[]", max(len(bufs), 1))
    for i, handle in enumerate(bufs):
        mem = MEMS.get(handle)
        iov[i].iov_base = ffi.cast("void *", mem.addr)
        iov[i].iov_len = mem.size
    return RINGS.get(ring).register(lib.IORING_REGISTER_BUFFERS, iov, len(bufs))


def uring_unregister_buffers(ring: int) -> int:
    return RINGS.get(ring).register(native.lib().IORING_UNREGISTER_BUFFERS,
                                    native.ffi().NULL, 0)


def uring_register_pages(ring: int, pages: int) -> dict[str, Any]:
    """Register one fresh anonymous buffer of ``pages`` pages; VmPin is read while it is."""
    mem = memory.alloc(pages * memory.PAGE)
    handle = MEMS.add(mem)
    try:
        uring_register_buffers(ring, [handle])
        return {"mem": handle, "vm_pin_kb": proc_status_kb("VmPin")}
    except OSError:
        memory.free(MEMS.pop(handle))
        raise


def uring_memlock_probe(max_pages: int, entries: int = 1) -> dict[str, Any]:
    """The most pages one IORING_REGISTER_BUFFERS may pin under the caller's credentials.

    A fresh ring (``entries``) is created, buffers of n pages are registered
    and unregistered for n = 1, 2, ... until ENOMEM; the ring is closed
    before returning so nothing stays charged.  The first ENOMEM's n minus
    one is the answer (to the page).
    """
    ring = Ring(entries)
    try:
        last_ok, pinned, limited = 0, 0, False
        for n in range(1, max_pages + 1):
            mem = memory.alloc(n * memory.PAGE)
            try:
                _register_one(ring, mem)
            except OSError as exc:
                if exc.errno != errno.ENOMEM:
                    raise
                limited = True
                break
            else:
                pinned = proc_status_kb("VmPin")
                ring.register(native.lib().IORING_UNREGISTER_BUFFERS, native.ffi().NULL, 0)
                last_ok = n
            finally:
                memory.free(mem)
        return {"max_pages": last_ok, "limited": limited, "vm_pin_kb_at_max": pinned}
    finally:
        ring.close()


def _register_one(ring: Ring, mem: memory.Mem) -> None:
    ffi, lib = native.ffi(), native.lib()
    iov = ffi.new("struct iovec *", {"iov_base": ffi.cast("void *", mem.addr),
                                     "iov_len": mem.size})
    ring.register(lib.IORING_REGISTER_BUFFERS, iov, 1)


def uring_pbuf_register(ring: int, bgid: int, entries: int = 8,
                        buf_size: int = 4096) -> int:
    return BUFRINGS.add(BufRing(RINGS.get(ring), bgid, entries, buf_size))


def uring_pbuf_read(pbuf: int, bid: int, length: int) -> str:
    return BUFRINGS.get(pbuf).read(bid, length).hex()


def uring_pbuf_unregister(pbuf: int) -> None:
    BUFRINGS.pop(pbuf).close()


def uring_vm_status() -> dict[str, int]:
    """This process's VmPin and VmLck (kB): where pinned and locked pages show."""
    return {"VmPin": proc_status_kb("VmPin"), "VmLck": proc_status_kb("VmLck")}


def uring_close_all() -> int:
    """Close every ring and buffer ring (test cleanup); returns how many rings."""
    for handle, _ in BUFRINGS.items():
        with contextlib.suppress(OSError):
            BUFRINGS.pop(handle).close()
    n = 0
    for handle, _ in RINGS.items():
        RINGS.pop(handle).close()
        n += 1
    return n


RESET: tuple[ResetStep, ...] = ((objects.RINGS, lambda: {"rings": uring_close_all()}),)


OPS: dict[str, Callable[..., Any]] = {
    "uring.setup": uring_setup,
    "uring.close": uring_close,
    "uring.submit": uring_submit,
    "uring.wait": uring_wait,
    "uring.state": uring_state,
    "uring.getevents": uring_getevents,
    "uring.run": uring_run,
    "uring.register_buffers": uring_register_buffers,
    "uring.unregister_buffers": uring_unregister_buffers,
    "uring.register_pages": uring_register_pages,
    "uring.memlock_probe": uring_memlock_probe,
    "uring.pbuf_register": uring_pbuf_register,
    "uring.pbuf_read": uring_pbuf_read,
    "uring.pbuf_unregister": uring_pbuf_unregister,
    "uring.vm_status": uring_vm_status,
    "uring.close_all": uring_close_all,
    **sqe_race.OPS,
}
