"""How a person attaches gdb to a guest booted with ``--gdb``.

QEMU serves the gdb remote protocol on a unix socket in a directory only the lab's user
may enter (lab.vm.vm.qemu_opts: a TCP port would let every local user in, and the stub
passes ``monitor`` commands to QEMU's monitor), and the kernel boots with ``nokaslr``,
so the addresses in the vmlinux (or in System.map) are where the symbols are.
Attaching stops every vCPU until gdb continues or detaches: a test running then sees
time stand still (its agent call may time out as a HANG).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from lab.kernel.artifact import Kernel
from lab.kernel.symbols import gdb_loader, no_vmlinux_hint, vmlinux_for

NOKASLR = "nokaslr"  # the kernel parameter --gdb adds


def attach_argv(kernel: Kernel, socket: Path, *, cache: Path) -> list[str]:
    """The gdb command line that attaches to the guest's stub at ``socket``, with ``kernel``'s
    vmlinux and the tree's gdb scripts (lx-dmesg, lx-ps, lx-symbols) where they are kept."""
    argv = ["gdb", "-q"]
    vmlinux = vmlinux_for(kernel, cache)
    loader = gdb_loader(kernel)
    if loader is not None:
        # gdb loads vmlinux-gdb.py from beside the vmlinux only from a safe path.
        argv += ["-iex", f"add-auto-load-safe-path {loader.parent}"]
    argv += ["-ex", f"target remote {socket}"]
    if vmlinux is not None:
        argv.append(str(vmlinux))
    return argv


def attach_lines(kernel: Kernel, socket: Path, *, cache: Path) -> list[str]:
    """What to print once the guest is up: the command, and what it lacks."""
    lines = [f"gdb: QEMU's gdbstub on {socket}; attach with: "
             f"{shlex.join(attach_argv(kernel, socket, cache=cache))}"]
    if vmlinux_for(kernel, cache) is None:
        lines.append(f"gdb: no vmlinux for {kernel.release}, so no symbols: "
                     f"{no_vmlinux_hint(kernel)}; System.map gives addresses (x/s ADDR)")
    elif gdb_loader(kernel) is None:
        lines.append("gdb: no lx-* commands: this build kept no gdb scripts")
    return lines
