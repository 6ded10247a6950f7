"""fs.*: files, pipes, eventfds and inode flags, on fds the agent tracks (agent.reset
closes what a test left open); fs.ext4_*: a scratch ext4 (scratch.py).

Plain os.* calls are used where they map one-to-one onto a syscall: they
already raise OSError with the kernel's errno, which is all the lab needs.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import os
from collections.abc import Callable
from typing import Any

from guest import native, objects
from guest.areas.fs import scratch
from guest.flags import flag_bits, from_os
from guest.objects import ResetStep

FDS: set[int] = set()  # fds fs.* ops opened and no op closed yet

# The inode flags fs.inode_flags knows (FS_*_FL in <linux/fs.h>, values from there).
INODE_FLAGS = ("APPEND", "IMMUTABLE", "NOATIME")


def _opened(fd: int) -> int:
    FDS.add(fd)
    return fd


def fs_open(path: str, flags: list[str] | int | None = None, mode: int = 0o644) -> int:
    bits = flag_bits(["O_RDONLY"] if flags is None else flags, from_os("O_"))
    return _opened(os.open(path, bits, mode))


def fs_close(fd: int) -> None:
    FDS.discard(fd)  # closed or not, the number is not ours to close later
    os.close(fd)


def fs_pipe(flags: list[str] | int | None = None) -> list[int]:
    """pipe2(flags): [read end, write end]."""
    return [_opened(fd) for fd in os.pipe2(flag_bits(flags or [], from_os("O_")))]


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
    bits = flag_bits(["EFD_NONBLOCK"] if flags is None else flags, from_os("EFD_"))
    return _opened(native.check(int(native.lib().lab_eventfd2(initval, bits))))


def fs_eventfd_read(fd: int) -> int:
    return os.eventfd_read(fd)


def fs_unlink(path: str) -> None:
    os.unlink(path)


def fs_inode_flags(fd: int, set_flags: list[str] | None = None,
                   clear_flags: list[str] | None = None) -> list[str]:
    """chattr for an fd: set and clear inode flags (APPEND...); returns those now set."""
    lib = native.lib()
    known = {n: int(getattr(lib, f"FS_{n}_FL")) for n in INODE_FLAGS}

    def bits(names: list[str]) -> int:
        return flag_bits(names, known, "inode flag")

    # The kernel reads and writes an int here, whatever the ioctl number says.
    buf = array.array("i", [0])
    fcntl.ioctl(fd, int(lib.FS_IOC_GETFLAGS), buf, True)
    if set_flags or clear_flags:
        buf[0] = (buf[0] | bits(set_flags or [])) & ~bits(clear_flags or [])
        fcntl.ioctl(fd, int(lib.FS_IOC_SETFLAGS), buf, False)
        fcntl.ioctl(fd, int(lib.FS_IOC_GETFLAGS), buf, True)
    return sorted(n for n, b in known.items() if buf[0] & b)


OPS: dict[str, Callable[..., Any]] = {
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
    **scratch.OPS,
}


def close_all() -> int:
    """Close the fds fs.* ops opened and no op closed (agent.reset); how many."""
    left = len(FDS)
    for fd in sorted(FDS):
        with contextlib.suppress(OSError):
            os.close(fd)
    FDS.clear()
    return left


def umount_all() -> int:
    """Unmount the scratch file systems a test left mounted (agent.reset, once the files
    are closed); how many."""
    return scratch.umount_all()


RESET: tuple[ResetStep, ...] = (
    (objects.FILES, lambda: {"fds": close_all()}),
    (objects.MOUNTS, lambda: {"mounts": umount_all()}),
)
