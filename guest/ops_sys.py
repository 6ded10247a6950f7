"""sys.*, kmsg, mem.* and fs.* operations.

Plain os.* calls are used where they map one-to-one onto a syscall: they
already raise OSError with the kernel's errno, which is all the lab needs.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

from guest import memory, native
from guest.registry import register
from guest.state import MEMS

# ---------------------------------------------------------------- sys.*


def sys_uname() -> dict[str, str]:
    u = os.uname()
    return {"release": u.release, "version": u.version, "machine": u.machine}


def sys_read_text(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def sys_write_text(path: str, text: str) -> None:
    # One write() call: sysfs/procfs knobs act per write, not per line.
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def thread_status() -> dict[str, str]:
    """/proc/thread-self/status as a dict: credentials are per thread (creds.call)."""
    fields: dict[str, str] = {}
    with open("/proc/thread-self/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def sys_caps() -> dict[str, Any]:
    """Capabilities of the calling *thread* (creds.call runs in its own)."""
    fields = thread_status()
    return {
        "effective": fields["CapEff"],
        "permitted": fields["CapPrm"],
        "tid": int(fields["Pid"]),
    }


# ---------------------------------------------------------------- kmsg


def kmsg_write(text: str, level: int = 6) -> None:
    # A fresh open per call: /dev/kmsg rate-limits writes per open file.
    # The trailing newline matters: without it printk leaves the record open
    # for continuation and readers of /dev/kmsg do not see it until the next
    # message arrives (observed on 6.18).
    if not text.endswith("\n"):
        text += "\n"
    fd = os.open("/dev/kmsg", os.O_WRONLY)
    try:
        os.write(fd, f"<{int(level)}>{text}".encode())
    finally:
        os.close(fd)


def _parse_record(raw: bytes) -> dict[str, Any] | None:
    text = raw.decode("utf-8", errors="replace")
    head, sep, body = text.partition(";")
    if not sep:
        return None
    parts = head.split(",")
    if len(parts) < 3:
        return None
    # Continuation lines (" KEY=value", dictionary properties) are dropped.
    message = body.split("\n", 1)[0]
    pri, seq, ts = int(parts[0]), int(parts[1]), int(parts[2])
    return {"seq": seq, "level": pri & 7, "ts_us": ts, "text": message}


def _kmsg_records() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    try:
        while True:
            try:
                raw = os.read(fd, 16384)  # one record per read; max is ~8 KiB
            except BlockingIOError:
                break
            except OSError as exc:
                # EPIPE: records we were about to read were overwritten; the
                # next read continues at the oldest record still present.
                if exc.errno == errno.EPIPE:
                    continue
                raise
            if not raw:
                break
            rec = _parse_record(raw)
            if rec is not None:
                out.append(rec)
    finally:
        os.close(fd)
    return out


def kmsg_read(after_seq: int = -1) -> list[dict[str, Any]]:
    return [r for r in _kmsg_records() if r["seq"] > after_seq]


def kmsg_seq() -> int:
    records = _kmsg_records()
    return int(records[-1]["seq"]) if records else -1


# ---------------------------------------------------------------- mem.*


def mem_alloc(size: int, align: int = memory.PAGE, fill: int = 0) -> int:
    mem = memory.alloc(size, align)
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


# ---------------------------------------------------------------- fs.*


def flag_bits(flags: list[str] | int, prefix: str) -> int:
    """Names from the os module (O_*, EFD_*) or a raw int, OR-ed together."""
    if isinstance(flags, int):
        return flags
    bits = 0
    for name in flags:
        if not name.startswith(prefix) or not isinstance(getattr(os, name, None), int):
            raise ValueError(f"unknown flag {name!r}")
        bits |= getattr(os, name)
    return bits


def fs_open(path: str, flags: list[str] | int | None = None, mode: int = 0o644) -> int:
    return os.open(
        path, flag_bits(["O_RDONLY"] if flags is None else flags, "O_"), mode
    )


def fs_close(fd: int) -> None:
    os.close(fd)


def fs_pipe() -> list[int]:
    return list(os.pipe())


def fs_write(fd: int, data_hex: str) -> int:
    return os.write(fd, bytes.fromhex(data_hex))


def fs_pwrite(fd: int, data_hex: str, offset: int) -> int:
    return os.pwrite(fd, bytes.fromhex(data_hex), offset)


def fs_read(fd: int, length: int) -> str:
    return os.read(fd, length).hex()


def fs_pread(fd: int, length: int, offset: int) -> str:
    return os.pread(fd, length, offset).hex()


def fs_ftruncate(fd: int, length: int) -> None:
    os.ftruncate(fd, length)


def fs_fsync(fd: int) -> None:
    os.fsync(fd)


def fs_eventfd(initval: int = 0, flags: list[str] | int | None = None) -> int:
    bits = flag_bits(["EFD_NONBLOCK"] if flags is None else flags, "EFD_")
    return native.check(int(native.lib().lab_eventfd2(initval, bits)))


def fs_eventfd_read(fd: int) -> int:
    return os.eventfd_read(fd)


def fs_unlink(path: str) -> None:
    os.unlink(path)


OPS: dict[str, Callable[..., Any]] = {
    "sys.uname": sys_uname,
    "sys.read_text": sys_read_text,
    "sys.write_text": sys_write_text,
    "sys.caps": sys_caps,
    "sys.kmsg_write": kmsg_write,
    "sys.kmsg_read": kmsg_read,
    "sys.kmsg_seq": kmsg_seq,
    "mem.alloc": mem_alloc,
    "mem.read": mem_read,
    "mem.write": mem_write,
    "mem.fill": mem_fill,
    "mem.addr": mem_addr,
    "mem.free": mem_free,
    "fs.open": fs_open,
    "fs.close": fs_close,
    "fs.pipe": fs_pipe,
    "fs.write": fs_write,
    "fs.pwrite": fs_pwrite,
    "fs.read": fs_read,
    "fs.pread": fs_pread,
    "fs.ftruncate": fs_ftruncate,
    "fs.fsync": fs_fsync,
    "fs.eventfd": fs_eventfd,
    "fs.eventfd_read": fs_eventfd_read,
    "fs.unlink": fs_unlink,
}
register(OPS)
