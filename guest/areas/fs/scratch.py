"""fs.ext4_*: a scratch ext4 file system on a loop device over a file in the guest's /tmp.

Some claims need a file system that supports what tmpfs does not (RWF_DONTCACHE is
ext4's, xfs's and nfs's only).  The image lives in /tmp (tmpfs in the guest), so nothing
of the NVMe namespaces other suites use is touched.  Kernels with ext4 and loop as modules
(Debian's) get them loaded; a kernel without them fails here with ENOENT and the reason.
agent.reset unmounts what a test left mounted.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from typing import Any

MOUNTS: dict[str, dict[str, str]] = {}  # mount point -> {"loop", "image", "dir"}
TIMEOUT_S = 120


def _run(argv: list[str]) -> str:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    if res.returncode != 0:
        raise OSError(errno.EIO, f"{' '.join(argv)}: exit {res.returncode}: "
                      f"{(res.stderr or res.stdout).strip()[-300:]}")
    return res.stdout.strip()


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        raise FileNotFoundError(errno.ENOENT, f"{name} is not installed (the guest runs the "
                                "host's tools)", name)
    return path


def fs_ext4_mount(size_mb: int = 32) -> str:
    """Make, attach and mount a fresh ext4 image; returns the mount point."""
    for module in ("loop", "ext4"):
        # Built in, or a module: modprobe answers 0 either way; absent, the mount says so.
        subprocess.run([_tool("modprobe"), "-q", module], capture_output=True,
                       timeout=TIMEOUT_S, check=False)
    work = tempfile.mkdtemp(prefix="kernel-lab-ext4-", dir="/tmp")
    image = os.path.join(work, "image")
    point = os.path.join(work, "mnt")
    os.mkdir(point)
    with open(image, "wb") as f:
        f.truncate(size_mb << 20)
    _run([_tool("mkfs.ext4"), "-q", "-F", image])
    loop = _run([_tool("losetup"), "--find", "--show", image])
    try:
        _run([_tool("mount"), "-t", "ext4", loop, point])
    except OSError:
        _run([_tool("losetup"), "--detach", loop])
        raise
    MOUNTS[point] = {"loop": loop, "image": image, "dir": work}
    return point


def fs_ext4_umount(point: str) -> None:
    """Unmount, detach and delete what fs.ext4_mount made."""
    info = MOUNTS.pop(point)
    _run([_tool("umount"), point])
    _run([_tool("losetup"), "--detach", info["loop"]])
    shutil.rmtree(info["dir"], ignore_errors=True)


def umount_all() -> int:
    """agent.reset: unmount every scratch ext4 still mounted; how many there were."""
    n = len(MOUNTS)
    for point in list(MOUNTS):
        try:
            fs_ext4_umount(point)
        except OSError:
            MOUNTS.pop(point, None)  # reported by the count; nothing more can be done here
    return n


OPS: dict[str, Callable[..., Any]] = {
    "fs.ext4_mount": fs_ext4_mount,
    "fs.ext4_umount": fs_ext4_umount,
}
