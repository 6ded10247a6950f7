"""sys.*: the kernel's identity, files under /proc and /sys, capabilities, its log
(kmsg.py), its config and features, and raw syscalls (raw.py).

Plain os.* calls are used where they map one-to-one onto a syscall: they
already raise OSError with the kernel's errno, which is all the lab needs.
"""

from __future__ import annotations

import errno
import gzip
import os
from collections.abc import Callable
from typing import Any

from guest.areas.sys import kmsg, raw
from guest.areas.sys.raw import sys_syscall


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


OPS: dict[str, Callable[..., Any]] = {
    "sys.uname": sys_uname,
    "sys.read_text": sys_read_text,
    "sys.write_text": sys_write_text,
    "sys.caps": sys_caps,
    "sys.kmsg_write": kmsg.kmsg_write,
    "sys.kmsg_read": kmsg.kmsg_read,
    "sys.kmsg_seq": kmsg.kmsg_seq,
    "sys.kmsg_mark": kmsg.kmsg_mark,
    "sys.kmsg_close": kmsg.kmsg_close,
    "sys.kernel_config": kernel_config,
    "sys.probe_features": probe_features,
    **raw.OPS,
}
