"""aio.* operations: raw io_setup/io_submit/io_getevents/io_cancel/io_destroy.

Every iocb the agent builds lives in a table until aio.free_iocbs: the kernel
identifies requests by the user-space iocb address (io_cancel looks it up,
io_event.obj echoes it, io_submit writes aio_key back into it), so the
memory must stay put after the request that created it.
"""

from __future__ import annotations

import errno
import select
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from guest import memory, native, objects
from guest.flags import flag_bits, from_lib
from guest.objects import ResetStep, Table
from guest.state import MEMS

# C type of each iocb field, used to wrap JSON ints the way C assignment
# would (fd -1 becomes 0xffffffff): tests deliberately pass odd values.
FIELD_TYPES = {
    "aio_data": "uint64_t",
    "aio_key": "uint32_t",
    "aio_rw_flags": "int",
    "aio_lio_opcode": "uint16_t",
    "aio_reqprio": "int16_t",
    "aio_fildes": "uint32_t",
    "aio_buf": "uint64_t",
    "aio_nbytes": "uint64_t",
    "aio_offset": "int64_t",
    "aio_reserved2": "uint64_t",
    "aio_flags": "uint32_t",
    "aio_resfd": "uint32_t",
}

# spec key -> iocb field, for the keys that are copied through unchanged
PLAIN_KEYS = {
    "fd": "aio_fildes",
    "nbytes": "aio_nbytes",
    "offset": "aio_offset",
    "reqprio": "aio_reqprio",
    "rw_flags": "aio_rw_flags",
    "resfd": "aio_resfd",
    "data": "aio_data",
    "key": "aio_key",
    "reserved2": "aio_reserved2",
}
SPEC_KEYS = set(PLAIN_KEYS) | {
    "opcode",
    "buf",
    "buf_offset",
    "buf_addr",
    "flags",
    "events",
    "iov",
    "page",
}
# Where an iocb may live: the heap (cffi), or a page of its own made read-only after
# it is filled, so that the kernel can read it but not write aio_key back.
PAGES = ("heap", "readonly")

IOCB_FLAGS = ("RESFD", "IOPRIO")  # IOCB_FLAG_* of <linux/aio_abi.h> (aio.cdef)
POLL_NAMES = (
    "POLLIN",
    "POLLPRI",
    "POLLOUT",
    "POLLERR",
    "POLLHUP",
    "POLLNVAL",
    "POLLRDNORM",
    "POLLRDBAND",
    "POLLWRNORM",
    "POLLWRBAND",
    "POLLMSG",
    "POLLRDHUP",
)


@dataclass
class IocbRec:
    cdata: Any  # struct iocb * owned by cffi, or pointing into ``mapping``
    addr: int
    keep: list[Any] = field(default_factory=list)  # e.g. an iovec array
    mapping: tuple[int, int] | None = None  # (address, length) of a page of its own

    def release(self) -> None:
        if self.mapping is not None:
            memory.unmap(*self.mapping)
            self.mapping = None


CTXS: set[int] = set()  # AIO contexts aio.setup created and no aio.destroy ended
IOCBS: Table[IocbRec] = Table("iocb")
_BY_ADDR: dict[int, int] = {}
_LAST: list[int | None] = []


def _wrap(ctype: str, value: int) -> int:
    return int(native.ffi().cast(ctype, value))


def _ctx(ctx: int) -> int:
    return _wrap("aio_context_t", ctx)


def _opcode(value: str | int) -> int:
    if isinstance(value, int):
        return value
    lib = native.lib()
    name = "IOCB_CMD_" + value.upper()
    if not hasattr(lib, name):
        raise ValueError(f"unknown opcode {value!r}")
    return int(getattr(lib, name))


def _iocb_flags(value: list[str] | int) -> int:
    known = from_lib(native.lib(), "IOCB_FLAG_", IOCB_FLAGS)
    return flag_bits(value, known, "iocb flag", "IOCB_FLAG_")


def _poll_events(value: list[str] | int) -> int:
    known = {n: int(getattr(select, n)) for n in POLL_NAMES if hasattr(select, n)}
    return flag_bits(value, known, "poll event")


def _buf_addr(buf: int | str, offset: int) -> int:
    if buf == "fault":
        return memory.fault_addr() + offset
    if buf == "null":
        return offset
    if isinstance(buf, int):
        return MEMS.get(buf).addr + offset
    raise ValueError(f"bad buf {buf!r}")


def _iovecs(entries: list[Any], keep: list[Any]) -> tuple[int, int]:
    """iov entries are [mem handle, offset, length]; returns (address, count)."""
    ffi = native.ffi()
    arr = ffi.new("struct iovec[]", max(len(entries), 1))
    for i, (handle, offset, length) in enumerate(entries):
        arr[i].iov_base = ffi.cast("void *", _buf_addr(handle, offset))
        arr[i].iov_len = length
    keep.append(arr)
    return int(ffi.cast("uintptr_t", arr)), len(entries)


def _build(spec: dict[str, Any]) -> IocbRec:
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise ValueError(f"unknown iocb spec keys {sorted(unknown)}")
    if "opcode" not in spec or "fd" not in spec:
        raise ValueError("iocb spec needs opcode and fd")
    if sum(k in spec for k in ("buf", "buf_addr", "events", "iov")) > 1:
        raise ValueError("buf, buf_addr, events and iov all set aio_buf: give one")
    page = spec.get("page", "heap")
    if page not in PAGES:
        raise ValueError(f"iocb page {page!r} is not one of {', '.join(PAGES)}")
    ffi, lib = native.ffi(), native.lib()
    if page == "heap":
        cdata = ffi.new("struct iocb *")  # zeroed, so unset fields are 0
        rec = IocbRec(cdata, int(ffi.cast("uintptr_t", cdata)))
    else:
        addr = memory.map_anon(memory.PAGE, lib.PROT_READ | lib.PROT_WRITE)  # zeroed
        rec = IocbRec(ffi.cast("struct iocb *", addr), addr, mapping=(addr, memory.PAGE))
    values: dict[str, int] = {"aio_lio_opcode": _opcode(spec["opcode"])}
    for key, fname in PLAIN_KEYS.items():
        if key in spec:
            values[fname] = int(spec[key])
    if "flags" in spec:
        values["aio_flags"] = _iocb_flags(spec["flags"])
    if "buf" in spec:
        values["aio_buf"] = _buf_addr(spec["buf"], int(spec.get("buf_offset", 0)))
    elif "buf_addr" in spec:
        values["aio_buf"] = int(spec["buf_addr"])
    elif "events" in spec:
        # IOCB_CMD_POLL takes its event mask from aio_buf (fs/aio.c aio_poll).
        values["aio_buf"] = _poll_events(spec["events"])
    elif "iov" in spec:
        values["aio_buf"], count = _iovecs(spec["iov"], rec.keep)
        values.setdefault("aio_nbytes", count)
    for fname, value in values.items():
        setattr(rec.cdata, fname, _wrap(FIELD_TYPES[fname], value))
    return rec


def _add(rec: IocbRec, spec: dict[str, Any]) -> int:
    iid = IOCBS.add(rec)
    _BY_ADDR[rec.addr] = iid
    if "data" not in spec:
        rec.cdata.aio_data = iid  # default aio_data: our id, echoed in io_event.data
    if rec.mapping is not None:  # filled in: now the kernel may read it, not write it
        lib = native.lib()
        native.check(int(lib.lab_mprotect(rec.addr, memory.PAGE, lib.PROT_READ)))
    return iid


def _iocb_ptr(iocb: int | str) -> Any:
    ffi = native.ffi()
    if iocb == "null":
        return ffi.NULL
    if iocb == "fault":
        return ffi.cast("struct iocb *", memory.fault_addr())
    if isinstance(iocb, int):
        return IOCBS.get(iocb).cdata
    raise ValueError(f"bad iocb reference {iocb!r}")


def _event(ev: Any) -> dict[str, Any]:
    obj = int(ev.obj)
    return {
        "data": int(ev.data),
        "obj": obj,
        "iocb": _BY_ADDR.get(obj),
        "res": int(ev.res),
        "res2": int(ev.res2),
    }


# ---------------------------------------------------------------- ops


def aio_setup(nr_events: int) -> int:
    ffi, lib = native.ffi(), native.lib()
    ctxp = ffi.new("aio_context_t *")  # must start at 0 or io_setup says EINVAL
    native.check(int(lib.lab_io_setup(_wrap("unsigned int", nr_events), ctxp)))
    CTXS.add(int(ctxp[0]))
    return int(ctxp[0])


def aio_destroy(ctx: int) -> None:
    ret = int(native.lib().lab_io_destroy(_ctx(ctx)))
    if ret == 0 or ret == -errno.EINVAL:  # destroyed now, or not a live context
        CTXS.discard(ctx)
    native.check(ret)


def aio_submit(ctx: int, iocbs: list[Any], nr: int | None = None) -> dict[str, Any]:
    # Build every spec first so a bad spec creates nothing.
    built: list[tuple[IocbRec, dict[str, Any]] | str] = []
    for entry in iocbs:
        if isinstance(entry, dict):
            built.append((_build(entry), entry))
        elif entry in ("null", "fault"):
            built.append(entry)
        else:
            raise ValueError(f"bad iocbs entry {entry!r}")
    ids: list[int | None] = []
    ptrs: list[int] = []
    for item in built:
        if item == "null":
            ids.append(None)
            ptrs.append(0)
        elif item == "fault":
            ids.append(None)
            ptrs.append(memory.fault_addr())
        else:
            assert not isinstance(item, str)
            rec, spec = item
            ids.append(_add(rec, spec))
            ptrs.append(rec.addr)
    _LAST[:] = ids
    count = len(ptrs) if nr is None else nr
    # The array is exactly len(iocbs) long and ends at a guard page: an nr
    # beyond it makes the kernel fault there, never read stray heap words.
    array = memory.GuardedPointers(ptrs)
    try:
        ret = int(
            native.lib().lab_io_submit(
                _ctx(ctx), count, array.as_cdata("struct iocb **")
            )
        )
    finally:
        array.close()
    native.check(ret)
    return {"submitted": ret, "iocbs": ids}


def aio_last_iocbs() -> list[int | None]:
    return list(_LAST)


def aio_iocb(id: int) -> dict[str, Any]:
    rec = IOCBS.get(id)
    c = rec.cdata
    return {
        "addr": rec.addr,
        "data": int(c.aio_data),
        "key": int(c.aio_key),
        "rw_flags": int(c.aio_rw_flags),
        "opcode": int(c.aio_lio_opcode),
        "reqprio": int(c.aio_reqprio),
        "fd": int(c.aio_fildes),
        "buf": int(c.aio_buf),
        "nbytes": int(c.aio_nbytes),
        "offset": int(c.aio_offset),
        "reserved2": int(c.aio_reserved2),
        "flags": int(c.aio_flags),
        "resfd": int(c.aio_resfd),
    }


def aio_getevents(
    ctx: int, min_nr: int, nr: int, timeout_ms: int | None = None
) -> list[dict[str, Any]]:
    ffi, lib = native.ffi(), native.lib()
    # At least one slot, so nr <= 0 still hands the kernel a valid pointer.
    events = ffi.new("struct io_event[]", max(nr, 1))
    timeout = ffi.NULL
    if timeout_ms is not None:
        timeout = ffi.new(
            "struct timespec *",
            {"tv_sec": timeout_ms // 1000, "tv_nsec": (timeout_ms % 1000) * 1_000_000},
        )
    n = native.check(int(lib.lab_io_getevents(_ctx(ctx), min_nr, nr, events, timeout)))
    return [_event(events[i]) for i in range(n)]


def aio_cancel(ctx: int, iocb: int | str, result: int | str | None = None) -> Any:
    """io_cancel; ``result`` is where the kernel may write an io_event: the agent's own
    zeroed one (None, returned decoded), "null", "fault" (a PROT_NONE page) or a mem handle.
    """
    ffi, lib = native.ffi(), native.lib()
    own = result is None
    if own:
        out = ffi.new("struct io_event *")
    elif result == "null":
        out = ffi.NULL
    elif result == "fault":
        out = ffi.cast("struct io_event *", memory.fault_addr())
    elif isinstance(result, int):
        out = ffi.cast("struct io_event *", MEMS.get(result).addr)
    else:
        raise ValueError(f"bad result {result!r}")
    native.check(int(lib.lab_io_cancel(_ctx(ctx), _iocb_ptr(iocb), out)))
    return _event(out) if own else None


# struct aio_ring's header (fs/aio.c), the first 32 bytes at the ctx address: the ring
# is mapped read-write into the process, so userspace can read and corrupt it.
RING_FIELDS = ("id", "nr", "head", "tail", "magic", "compat_features", "incompat_features",
               "header_length")


def _ring(ctx: int) -> Any:
    # Touching an address that is not mapped would kill the agent: check first.
    if memory.mapping_at(ctx) is None:
        raise ValueError(f"no mapping at ctx {ctx:#x}: not a live AIO ring")
    return native.ffi().cast("uint32_t *", ctx)


def aio_ring(ctx: int) -> dict[str, int]:
    """The ring header at ``ctx`` as the process sees it."""
    words = _ring(ctx)
    return {name: int(words[i]) for i, name in enumerate(RING_FIELDS)}


def aio_ring_write(ctx: int, field: str, value: int) -> int:
    """Overwrite one header field (a u32); returns the old value."""
    if field not in RING_FIELDS:
        raise ValueError(f"ring field {field!r} is not one of {', '.join(RING_FIELDS)}")
    words = _ring(ctx)
    i = RING_FIELDS.index(field)
    old = int(words[i])
    words[i] = value & 0xFFFFFFFF
    return old


def destroy_all() -> int:
    """io_destroy every context a test left (agent.reset, once its files are closed and
    its threads returned: io_destroy waits for in-flight reads); how many."""
    left = len(CTXS)
    lib, ffi = native.lib(), native.ffi()
    for ctx in sorted(CTXS):
        # The context may be gone already (destroyed by a race loop): EINVAL is fine.
        lib.lab_io_destroy(ffi.cast("aio_context_t", ctx))
    CTXS.clear()
    return left


def aio_free_iocbs() -> int:
    n = len(IOCBS)
    for _, rec in IOCBS.items():
        rec.release()
    IOCBS.clear()
    _BY_ADDR.clear()
    _LAST.clear()
    return n


def _destroy_all() -> dict[str, int]:
    destroy_all()  # counted before the files closed (a thread's op may end one)
    return {}


RESET: tuple[ResetStep, ...] = (
    (objects.COUNT, lambda: {"contexts": len(CTXS)}),
    (objects.CONTEXTS, _destroy_all),
    (objects.REQUESTS, lambda: {"iocbs": aio_free_iocbs()}),
)


OPS: dict[str, Callable[..., Any]] = {
    "aio.setup": aio_setup,
    "aio.destroy": aio_destroy,
    "aio.submit": aio_submit,
    "aio.last_iocbs": aio_last_iocbs,
    "aio.iocb": aio_iocb,
    "aio.getevents": aio_getevents,
    "aio.cancel": aio_cancel,
    "aio.ring": aio_ring,
    "aio.ring_write": aio_ring_write,
    "aio.free_iocbs": aio_free_iocbs,
}
