"""Where a kernel's symbols are, and what they allow: gdb, the kernel's gdb scripts, and
stack traces decoded to file:line.

A build keeps its ``vmlinux`` in its cache entry (lab.kernel.build), with the tree's
scripts beside it: ``vmlinux-gdb.py`` and ``scripts/gdb/`` (the lx-* commands), and
``scripts/decode_stacktrace.sh`` and ``scripts/faddr2line``.  Debian's package ships no
vmlinux (its ``-dbg`` package does); an image path has none.  ELF symbols (``.symtab``)
are enough for gdb to read a variable by its address; file:line, types and the lx-*
commands need DWARF (``.debug_info``/``.debug_line``: the ``debuginfo`` fragment).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Literal

from lab.kernel.artifact import Kernel
from lab.kernel.dbg import dbg_vmlinux

GDB_LOADER = "vmlinux-gdb.py"  # gdb auto-loads OBJFILE-gdb.py from beside the objfile
GDB_SCRIPTS = Path("scripts") / "gdb"  # where the loader looks, beside itself
DECODE = Path("scripts") / "decode_stacktrace.sh"
FADDR2LINE = Path("scripts") / "faddr2line"


def vmlinux_for(kernel: Kernel, cache: Path) -> Path | None:
    """The vmlinux with ``kernel``'s symbols, None when the lab has none for it: a build's
    kept one, or a Debian package's from its -dbg package (`lab fetch --dbg`), of the
    same upload."""
    if kernel.vmlinux is not None and kernel.vmlinux.is_file():
        return kernel.vmlinux
    if kernel.source == "debian":
        return dbg_vmlinux(cache, kernel.release, kernel.package_version)
    return None


def no_vmlinux_hint(kernel: Kernel) -> str:
    """What would give ``kernel`` a vmlinux, for a user who asked for symbols."""
    if kernel.source == "debian":
        return ("Debian's package has no vmlinux; its -dbg package has (lab fetch --dbg "
                f"{kernel.spec}, about 1 GB)")
    if kernel.source == "path":
        return "an image path has none: give the kernel as tree:, git: or worktree: to build it"
    return ("this build was published before the lab kept vmlinux: rebuild it (remove its "
            "cache entry, or change the variant)")


def gdb_loader(kernel: Kernel) -> Path | None:
    """The tree's gdb scripts' loader beside the kept vmlinux, None without them."""
    if kernel.vmlinux is None:
        return None
    loader = kernel.vmlinux.parent / GDB_LOADER
    return loader if loader.is_file() and (loader.parent / GDB_SCRIPTS).is_dir() else None


def decode_script(kernel: Kernel) -> Path | None:
    """The tree's decode_stacktrace.sh beside the kept vmlinux, None without it."""
    if kernel.vmlinux is None:
        return None
    script = kernel.vmlinux.parent / DECODE
    return script if script.is_file() else None


def has_dwarf(elf: Path) -> bool:
    """Whether ``elf`` has line tables (a .debug_line section): what file:line needs."""
    st = os.stat(elf)
    return _has_section(str(elf), st.st_ino, st.st_size, st.st_mtime_ns, b".debug_line")


@functools.lru_cache(maxsize=16)
def _has_section(path: str, ino: int, size: int, mtime_ns: int, name: bytes) -> bool:
    """Read the ELF64 section headers' names (no tool: one seek, two reads)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:  # ELFCLASS64 only (x86-64 kernels)
            return False
        order: Literal["little", "big"] = "little" if head[5] == 1 else "big"
        shoff = int.from_bytes(head[0x28:0x30], order)
        shentsize = int.from_bytes(head[0x3A:0x3C], order)
        shnum = int.from_bytes(head[0x3C:0x3E], order)
        shstrndx = int.from_bytes(head[0x3E:0x40], order)
        if not shoff or not shnum or shstrndx >= shnum:
            return False
        f.seek(shoff)
        table = f.read(shentsize * shnum)
        strtab = table[shstrndx * shentsize:(shstrndx + 1) * shentsize]
        str_off = int.from_bytes(strtab[0x18:0x20], order)
        str_size = int.from_bytes(strtab[0x20:0x28], order)
        f.seek(str_off)
        names = f.read(str_size)
    for i in range(shnum):
        at = int.from_bytes(table[i * shentsize:i * shentsize + 4], order)
        if names[at:names.find(b"\0", at)] == name:
            return True
    return False
