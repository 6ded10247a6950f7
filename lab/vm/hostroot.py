"""The host directories the guest reads through a cached 9p view of the host root.

virtme-ng exports the host root with 9p in its default mode (no cache): every page
a guest process touches is one 9p read, and nothing stays cached between two
processes.  Under TCG that made the guest's Python take 3-6 s to start, ``sshd -t``
2-3 s and each exec of a dynamically linked tool a few hundred milliseconds.

The lab therefore exports the host root a second time, read-only, as its own 9p
device (``TAG``), and ``guest/boot.sh`` mounts it with ``cache=loose`` (page cache
and read-ahead kept) and binds it over the directories listed here (``fstab``: one
``mount -a`` does it all, since each exec before the binds is an uncached one), the ones whose
files the guest executes or imports: the system's binaries and libraries, the
interpreter that runs the agent, and the kernel's modules.  Loose caching trusts
that the host does not change these files while the VM lives, which holds for
them; nothing the lab writes during a run (the VM directory, results, the cache's
other entries) is ever under one of them.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

TAG = "kernel-lab-root"

# Never bound: they hold what virtme-ng sets up in the guest (its overlays, the
# module symlink under /usr/lib/modules) or what changes while the VM runs.
_NEVER = tuple(Path(p) for p in ("/", "/usr", "/usr/lib", "/lib", "/lib64", "/etc", "/tmp",
                                 "/run", "/var", "/home", "/root", "/dev", "/proc", "/sys"))


def libc_dir(maps: str | None = None) -> str | None:
    """The directory of the libc this interpreter has mapped: the system's shared libraries
    (the guest runs the same interpreter, and sshd and the tools load from there too)."""
    if maps is None:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            maps = f.read()
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and os.path.basename(fields[5]).startswith("libc.so"):
            return os.path.dirname(os.path.realpath(fields[5]))
    return None


def interpreter_dirs() -> list[str]:
    """Where the agent's interpreter lives: its installation prefix when it has one of its
    own (pyenv, /opt), else its binary's directory and its stdlib."""
    prefix = Path(os.path.realpath(sys.base_prefix))
    if prefix not in _NEVER:
        return [str(prefix)]
    # The stdlib where it really is (a venv's sysconfig paths name the venv instead);
    # lib-dynload sits inside it.  LIBDIR holds a shared libpython.
    return [str(Path(os.path.realpath(sys.executable)).parent),
            os.path.realpath(os.path.dirname(os.__file__)),
            os.path.realpath(str(sysconfig.get_config_var("LIBDIR") or "/"))]


def fast_dirs(modules: Path | None) -> list[str]:
    """The directories to bind, outermost only, in the order to bind them: libraries
    first, so that every later exec (mount's own) loads from the cache."""
    wanted = [libc_dir() or "/", "/usr/bin", "/usr/sbin", *interpreter_dirs()]
    if modules is not None:
        wanted.append(os.path.realpath(modules))
    chosen: list[str] = []
    for d in wanted:
        p = Path(d)
        if not p.is_dir() or p in _NEVER or "\n" in d or d in chosen:
            continue
        if any(p.is_relative_to(c) for c in chosen):
            continue  # already covered by an outer one
        chosen = [c for c in chosen if not Path(c).is_relative_to(p)] + [d]
    return chosen


MOUNTPOINT = "/run/kernel-lab-host"
MOUNT_OPTIONS = "ro,trans=virtio,version=9p2000.L,cache=loose,msize=512000,X-mount.mkdir"


def _field(text: str) -> str:
    """An fstab field: whitespace and backslashes octal-escaped, as fstab(5) says."""
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in text)


def fstab(modules: Path | None, *, tmpfs: str, release: str | None = None) -> str:
    """What guest/boot.sh mounts first, in order, with one ``mount -a -T``: the cached
    export, its binds, then the lab's own tmpfs at ``tmpfs`` (mode 0700).

    ``release``: the guest's root is the lab's tree (lab.vm.sandbox), where virtme-ng
    expects the modules at ``/lib/modules/RELEASE`` (virtme_root_mods): bound there too.
    """
    lines = [f"{TAG} {MOUNTPOINT} 9p {MOUNT_OPTIONS} 0 0"]
    lines += [f"{_field(MOUNTPOINT + d)} {_field(d)} none bind 0 0" for d in fast_dirs(modules)]
    if release is not None and modules is not None:
        lines.append(f"{_field(MOUNTPOINT + os.path.realpath(modules))} "
                     f"{_field('/lib/modules/' + release)} none bind,X-mount.mkdir 0 0")
    lines.append(f"kernel-lab {_field(tmpfs)} tmpfs mode=0700,X-mount.mkdir 0 0")
    return "".join(f"{line}\n" for line in lines)


def qemu_opts(root: Path | None = None) -> list[str]:
    """The second, read-only export of the guest's root (``root``: the lab's tree, None:
    the host's ``/``) (remapped inodes: one 9p device spans several host filesystems, and
    the guest's cache keys files by inode)."""
    return ["-fsdev", f"local,id=labroot,path={root or '/'},security_model=none,readonly=on,"
                      "multidevs=remap",
            "-device", f"virtio-9p-pci,fsdev=labroot,mount_tag={TAG}"]
