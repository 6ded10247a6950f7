"""sys.*, kmsg, mem.* and fs.* operations.

Plain os.* calls are used where they map one-to-one onto a syscall: they
already raise OSError with the kernel's errno, which is all the lab needs.
"""

from __future__ import annotations

import array
import errno
import fcntl
import gzip
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from guest import memory, native
from guest.areas.sys.raw import sys_syscall
from guest.registry import register
from guest.state import FDS, MEMS

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


def _read_all(fd: int) -> list[dict[str, Any]]:
    """Every record ``fd`` has not read yet (it reads /dev/kmsg without blocking)."""
    out: list[dict[str, Any]] = []
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
    return out


def _kmsg_records() -> list[dict[str, Any]]:
    """The whole kernel log, from a fresh open."""
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    try:
        return _read_all(fd)
    finally:
        os.close(fd)


class _KmsgTail:
    """The kernel log since the last test window opened, read incrementally.

    Every test opens and closes a window (kmsg_mark, kmsg_close); reading and parsing the
    whole log each time cost a tenth of a second per read under TCG, more as the log grew
    through a suite.  One open file keeps its place: each call reads only what is new, and
    the records from the window's start on are kept.  A window older than what is kept, a
    call from a forked child (which would move the shared file position) or from another
    thread (an op run by thread.* or creds.call, which must open /dev/kmsg with its own
    credentials) reads the whole log from a fresh open, as before.
    """

    def __init__(self) -> None:
        self.fd: int | None = None
        self.owner: tuple[int, int] = (0, 0)  # (pid, thread) that opened ``fd``
        self.floor = -1  # records with seq > floor are all in ``kept``
        self.kept: list[dict[str, Any]] = []

    def _mine(self) -> bool:
        """Whether this call may use the shared file (the agent's main thread)."""
        if self.fd is None and threading.current_thread() is threading.main_thread():
            self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            self.owner, self.floor, self.kept = (os.getpid(), threading.get_ident()), -1, []
        return self.fd is not None and self.owner == (os.getpid(), threading.get_ident())

    def since(self, after_seq: int) -> list[dict[str, Any]]:
        """Every record with seq > ``after_seq``."""
        if not self._mine():
            return [r for r in _kmsg_records() if r["seq"] > after_seq]
        assert self.fd is not None
        new = _read_all(self.fd)
        expected = self.kept[-1]["seq"] + 1 if self.kept else self.floor + 1
        if new and self.floor >= 0 and new[0]["seq"] != expected:
            # The ring overwrote records between two reads: what is kept has a hole.
            self.floor, self.kept = new[0]["seq"] - 1, []
        self.kept += new
        if after_seq < self.floor:
            return [r for r in _kmsg_records() if r["seq"] > after_seq]
        return [r for r in self.kept if r["seq"] > after_seq]

    def last_seq(self) -> int:
        records = self.since(self.floor if self._mine() else -1)
        return int(records[-1]["seq"]) if records else self.floor

    def keep_from(self, seq: int) -> None:
        """Forget records up to ``seq`` (a new window opened after it)."""
        if self._mine() and seq > self.floor:
            self.kept = [r for r in self.kept if r["seq"] > seq]
            self.floor = seq


_TAIL = _KmsgTail()


def kmsg_read(after_seq: int = -1, settle_ms: int = 0,
              max_wait_ms: int = 0) -> list[dict[str, Any]]:
    """Records after ``after_seq``; with ``settle_ms``, first wait until the log has been
    quiet that long (at most ``max_wait_ms``), so that deferred work a test started
    (workqueue items, RCU callbacks, completions) has printed what it will print.
    """
    records = _TAIL.since(after_seq)
    if settle_ms <= 0:
        return records
    deadline = time.monotonic() + max(max_wait_ms, settle_ms) / 1000
    while True:
        last = records[-1]["seq"] if records else after_seq
        time.sleep(settle_ms / 1000)
        records = _TAIL.since(after_seq)
        if (records[-1]["seq"] if records else after_seq) == last:
            return records
        if time.monotonic() > deadline:
            return records


def _taint() -> int:
    with open("/proc/sys/kernel/tainted", encoding="ascii") as f:
        return int(f.read())


def kmsg_mark(text: str, since_seq: int | None = None) -> dict[str, Any]:
    """Open a test's window in one round trip: the last record's seq before the marker,
    the marker's own timestamp, and the taint mask.

    With ``since_seq`` (where the previous window closed), also every record after it
    up to the marker: what the kernel printed between the two windows (the previous
    test's deferred work), so that no record falls between windows.
    """
    before = kmsg_seq()
    gap = [r for r in _TAIL.since(since_seq) if r["seq"] <= before] \
        if since_seq is not None else []
    taint = _taint()  # read with the gap: whatever tainted the kernel by now is in it
    _TAIL.keep_from(before)  # the window opens here: what came before is not asked for again
    kmsg_write(text)
    mine = [r for r in _TAIL.since(before) if r["text"] == text.rstrip("\n")]
    return {"seq": before, "ts_us": int(mine[0]["ts_us"]) if mine else 0, "taint": taint,
            "records": gap}


def kmsg_close(after_seq: int, text: str, settle_ms: int = 0,
               max_wait_ms: int = 0) -> dict[str, Any]:
    """Close a test's window: every record since it opened (once the log has been quiet
    ``settle_ms``), then the end marker, the taint mask, and ``seq``: the last record
    read, where the next window's gap starts (the end marker comes after it)."""
    records = kmsg_read(after_seq, settle_ms=settle_ms, max_wait_ms=max_wait_ms)
    taint = _taint()
    kmsg_write(text)
    return {"records": records, "taint": taint,
            "seq": int(records[-1]["seq"]) if records else after_seq}


def kmsg_seq() -> int:
    return _TAIL.last_seq()


# ---------------------------------------------------------------- the kernel's config


def kernel_config() -> str | None:
    """/proc/config.gz (CONFIG_IKCONFIG_PROC) as text, None when the kernel has none."""
    try:
        with open("/proc/config.gz", "rb") as f:
            return gzip.decompress(f.read()).decode("utf-8", "replace")
    except FileNotFoundError:
        return None


def _syscall_exists(name: str) -> bool:
    # Zero arguments are EINVAL/EFAULT for the real syscall; sys_ni_syscall says ENOSYS.
    try:
        sys_syscall(name, [0, 0])
    except OSError as exc:
        return exc.errno != errno.ENOSYS
    return True


def _module(subdir: str, name: str) -> bool:
    """A module ``name`` (any compression) the guest could load, under kernel/``subdir``."""
    mods = f"/lib/modules/{os.uname().release}/kernel/{subdir}"
    return os.path.isdir(mods) and any(n.split(".")[0] == name for n in os.listdir(mods))


def _filesystem(name: str) -> bool:
    with open("/proc/filesystems") as f:
        return any(line.split()[-1] == name for line in f if line.strip())


def probe_features() -> dict[str, bool]:
    """What a kernel of unknown config has, asked of the kernel itself.

    AIO and IO_URING: does the syscall exist (ENOSYS only from sys_ni_syscall).
    BLK_DEV_UBLK: /dev/ublk-control, or a ublk_drv module the guest could load.
    BLK_DEV_LOOP: /dev/loop-control, or a loop module.  EXT4_FS: ext4 in
    /proc/filesystems, or an ext4 module.  Every option a scenario's
    requires_config names is here, so that none is left unknown after a probe.
    """
    return {"AIO": _syscall_exists("io_setup"),
            "IO_URING": _syscall_exists("io_uring_setup"),
            "BLK_DEV_UBLK": os.path.exists("/dev/ublk-control")
            or _module("drivers/block", "ublk_drv"),
            "BLK_DEV_LOOP": os.path.exists("/dev/loop-control")
            or _module("drivers/block", "loop"),
            "EXT4_FS": _filesystem("ext4") or _module("fs/ext4", "ext4")}


# ---------------------------------------------------------------- mem.*


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


def _opened(fd: int) -> int:
    FDS.add(fd)
    return fd


def fs_open(path: str, flags: list[str] | int | None = None, mode: int = 0o644) -> int:
    return _opened(os.open(path, flag_bits(["O_RDONLY"] if flags is None else flags, "O_"),
                           mode))


def fs_close(fd: int) -> None:
    FDS.discard(fd)  # closed or not, the number is not ours to close later
    os.close(fd)


def fs_pipe(flags: list[str] | int | None = None) -> list[int]:
    """pipe2(flags): [read end, write end]."""
    return [_opened(fd) for fd in os.pipe2(flag_bits(flags or [], "O_"))]


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
    return _opened(native.check(int(native.lib().lab_eventfd2(initval, bits))))


def fs_eventfd_read(fd: int) -> int:
    return os.eventfd_read(fd)


def fs_unlink(path: str) -> None:
    os.unlink(path)


# FS_IOC_GETFLAGS / FS_IOC_SETFLAGS (_IOR/_IOW('f', 1/2, long) on 64-bit) and the inode
# flags they carry, from <linux/fs.h>; spelled out because that header's RWF_* clash
# with glibc's <sys/uio.h> in the one translation unit the agent's C is built as.
FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
INODE_FLAGS = {"APPEND": 0x00000020, "IMMUTABLE": 0x00000010, "NOATIME": 0x00000080}


def fs_inode_flags(fd: int, set_flags: list[str] | None = None,
                   clear_flags: list[str] | None = None) -> list[str]:
    """chattr for an fd: set and clear inode flags (APPEND...); returns those now set."""
    def bits(names: list[str]) -> int:
        unknown = set(names) - set(INODE_FLAGS)
        if unknown:
            raise ValueError(f"unknown inode flags {sorted(unknown)}")
        return sum(INODE_FLAGS[n] for n in set(names))

    # The kernel reads and writes an int here, whatever the ioctl number says.
    buf = array.array("i", [0])
    fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf, True)
    if set_flags or clear_flags:
        buf[0] = (buf[0] | bits(set_flags or [])) & ~bits(clear_flags or [])
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, buf, False)
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf, True)
    return sorted(n for n, b in INODE_FLAGS.items() if buf[0] & b)


OPS: dict[str, Callable[..., Any]] = {
    "sys.uname": sys_uname,
    "sys.read_text": sys_read_text,
    "sys.write_text": sys_write_text,
    "sys.caps": sys_caps,
    "sys.kmsg_write": kmsg_write,
    "sys.kmsg_read": kmsg_read,
    "sys.kmsg_seq": kmsg_seq,
    "sys.kmsg_mark": kmsg_mark,
    "sys.kmsg_close": kmsg_close,
    "sys.kernel_config": kernel_config,
    "sys.probe_features": probe_features,
    "mem.alloc": mem_alloc,
    "mem.read": mem_read,
    "mem.write": mem_write,
    "mem.fill": mem_fill,
    "mem.addr": mem_addr,
    "mem.free": mem_free,
    "mem.mapping": mem_mapping,
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
    "fs.inode_flags": fs_inode_flags,
}
register(OPS)
