"""mem.*: buffers the agent allocates (anonymous mappings, guest/memory.py) and hands
to the kernel by address; agent.reset frees what a test left."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from guest import memory
from guest.state import MEMS


def mem_alloc(size: int, align: int = memory.PAGE, fill: int = 0, at: int | None = None) -> int:
    """A buffer of ``size`` bytes; ``at`` puts it exactly there (EEXIST if taken)."""
    mem = memory.alloc(size, align, at)
    if fill:
        memory.buffer(mem.addr, size)[:] = bytes([fill]) * size
    return MEMS.add(mem)


def mem_read(handle: int, offset: int = 0, length: int | None = None) -> str:
    addr, n = memory.span(MEMS.get(handle), offset, length)
    return bytes(memory.buffer(addr, n)[:]).hex()


def mem_write(handle: int, data_hex: str, offset: int = 0) -> int:
    data = bytes.fromhex(data_hex)
    addr, n = memory.span(MEMS.get(handle), offset, len(data))
    memory.buffer(addr, n)[:] = data
    return n


def mem_fill(handle: int, byte: int) -> None:
    mem = MEMS.get(handle)
    memory.buffer(mem.addr, mem.size)[:] = bytes([byte]) * mem.size


def mem_addr(handle: int) -> int:
    return MEMS.get(handle).addr


def mem_free(handle: int) -> None:
    memory.free(MEMS.pop(handle))


def mem_mapping(addr: int) -> dict[str, Any] | None:
    """The mapping (start, end, perms, path) covering ``addr`` in the agent, or None."""
    return memory.mapping_at(addr)


OPS: dict[str, Callable[..., Any]] = {
    "mem.alloc": mem_alloc,
    "mem.read": mem_read,
    "mem.write": mem_write,
    "mem.fill": mem_fill,
    "mem.addr": mem_addr,
    "mem.free": mem_free,
    "mem.mapping": mem_mapping,
}
