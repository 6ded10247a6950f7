"""Agent-owned memory: aligned buffers, fault addresses, guarded arrays.

Buffers are anonymous mappings rather than Python objects: O_DIRECT needs
alignment the allocator does not promise, and a buffer freed while the
kernel still targets it then yields EFAULT instead of heap corruption.
"""

from __future__ import annotations

import errno
import mmap
from dataclasses import dataclass
from typing import Any

from guest import native

PAGE = mmap.PAGESIZE


@dataclass
class Mem:
    map_addr: int  # start of the whole mapping (for munmap)
    map_len: int
    addr: int  # aligned start handed to the kernel
    size: int


def _round_up(n: int, to: int) -> int:
    return (n + to - 1) // to * to


def map_anon(length: int, prot: int) -> int:
    lib = native.lib()
    addr = int(lib.lab_map(length, prot))
    if addr == 0:
        err = int(lib.lab_errno())
        native.check(-err)
    return addr


def map_anon_at(addr: int, length: int, prot: int) -> int:
    """An anonymous mapping exactly at ``addr``; EEXIST if something is mapped there."""
    lib = native.lib()
    got = int(lib.lab_map_at(addr, length, prot))
    if got == 0:
        native.check(-int(lib.lab_errno()))
    if got != addr:  # a kernel before 4.17 takes the flag for a hint
        unmap(got, length)
        native.check(-errno.EEXIST)
    return got


def unmap(addr: int, length: int) -> None:
    native.check(int(native.lib().lab_munmap(addr, length)))


def alloc(size: int, align: int = PAGE, at: int | None = None) -> Mem:
    if size < 0:
        raise ValueError("size must be >= 0")
    lib = native.lib()
    if at is not None:
        if at % PAGE:
            raise ValueError("at must be page aligned")
        length = _round_up(max(size, 1), PAGE)
        base = map_anon_at(at, length, lib.PROT_READ | lib.PROT_WRITE)
        return Mem(base, length, base, size)
    if align <= 0 or align & (align - 1):
        raise ValueError("align must be a power of two")
    # mmap is page aligned already; larger alignments over-map and skip ahead.
    extra = align - PAGE if align > PAGE else 0
    map_len = _round_up(max(size, 1) + extra, PAGE)
    base = map_anon(map_len, lib.PROT_READ | lib.PROT_WRITE)
    addr = _round_up(base, align)
    return Mem(base, map_len, addr, size)


def free(mem: Mem) -> None:
    unmap(mem.map_addr, mem.map_len)


def buffer(addr: int, length: int) -> Any:
    ffi = native.ffi()
    return ffi.buffer(ffi.cast("char *", addr), length)


def span(mem: Mem, offset: int, length: int | None) -> tuple[int, int]:
    """Bounds-check a (offset, length) window inside a buffer."""
    if length is None:
        length = mem.size - offset
    if offset < 0 or length < 0 or offset + length > mem.size:
        raise ValueError(f"range {offset}+{length} outside buffer of {mem.size} bytes")
    return mem.addr + offset, length


def mapping_at(addr: int) -> dict[str, Any] | None:
    """The /proc/self/maps entry that covers ``addr``, or None when nothing is mapped there."""
    with open("/proc/self/maps", encoding="ascii", errors="replace") as f:
        for line in f:
            parts = line.split(None, 5)
            start, _, end = parts[0].partition("-")
            if int(start, 16) <= addr < int(end, 16):
                return {"start": int(start, 16), "end": int(end, 16), "perms": parts[1],
                        "path": parts[5].strip() if len(parts) > 5 else ""}
    return None


_fault_page: int | None = None


def fault_addr() -> int:
    """Address of a PROT_NONE page: mapped (never reused) but unreadable."""
    global _fault_page
    if _fault_page is None:
        _fault_page = map_anon(PAGE, native.lib().PROT_NONE)
    return _fault_page


class GuardedPointers:
    """An array of pointers that ends exactly where a PROT_NONE page begins.

    io_submit reads ``nr`` pointers; when a test passes nr larger than the
    list, the kernel must fault on the guard page (EFAULT for the first
    entry, a short count otherwise) instead of reading stray heap words.
    """

    def __init__(self, values: list[int]) -> None:
        lib = native.lib()
        ffi = native.ffi()
        nbytes = ffi.sizeof("uintptr_t") * len(values)
        data_len = _round_up(max(nbytes, 1), PAGE)
        self.map_len = data_len + PAGE
        self.map_addr = map_anon(self.map_len, lib.PROT_READ | lib.PROT_WRITE)
        native.check(
            int(lib.lab_mprotect(self.map_addr + data_len, PAGE, lib.PROT_NONE))
        )
        self.addr = self.map_addr + data_len - nbytes
        slots = ffi.cast("uintptr_t *", self.addr)
        for i, value in enumerate(values):
            slots[i] = value

    def as_cdata(self, ctype: str) -> Any:
        return native.ffi().cast(ctype, self.addr)

    def close(self) -> None:
        unmap(self.map_addr, self.map_len)
