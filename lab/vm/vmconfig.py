"""How a guest is booted: its resources, acceleration, kernel parameters and emulated
NVMe controllers (``VmConfig``), every value checked as it is made (lab.options's checks,
the same the command line's options use), and the console log's cap."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from lab.errors import UserError
from lab.options import (
    parse_boot_timeout,
    parse_console_cap,
    parse_cpus,
    parse_memory,
    parse_param,
    parse_port,
)
from lab.vm.qmp import FORMATS

# An NVMe controller's role names its image file and its serial goes to QEMU's -device
# and to the guest's probe script: plain words (the NVMe serial field holds 20 bytes).
NVME_NAME = re.compile(r"[A-Za-z0-9_]{1,20}")


@dataclass(frozen=True)
class NvmeSpec:
    """One emulated NVMe controller with one namespace."""

    role: str  # how scenarios ask for it: "fast" or "slow"
    serial: str
    size: int
    iops_limit: int | None = None  # QEMU drive throttling; None = unthrottled

    def __post_init__(self) -> None:
        for what, name in (("role", self.role), ("serial", self.serial)):
            if not isinstance(name, str) or not NVME_NAME.fullmatch(name):
                raise UserError(f"NVMe {what} {name!r}: give 1-20 letters, digits or _")
        if not _positive(self.size):
            raise UserError(f"NVMe {self.role} size {self.size!r}: give bytes, a whole number "
                            "above 0")
        if self.iops_limit is not None and not _positive(self.iops_limit):
            raise UserError(f"NVMe {self.role} iops_limit {self.iops_limit!r}: give a whole "
                            "number above 0, or None (unthrottled)")


def _positive(n: object) -> bool:
    return type(n) is int and n > 0


# NVMe timeouts for emulation, not hardware: under TCG on a loaded host a command can
# take longer than the driver's default 30 s (I/O) and 60 s (admin), and the driver
# then aborts it and resets the controller (EINTR in the guest, seen after ~62 s with
# six runs on two cores).  The drivers read these as `uint` seconds from 6.1 on.
#
# net.ifnames=0: where the host's udevd runs in the guest (lab.vm.vm NOOPS), it keeps
# the kernel's name for the NIC; guest/boot.sh finds the NIC by driver anyway.
#
# log_buf_len=8M: a test's window is read from the kernel's ring after the test, so the
# ring must hold all the test logged.  Debian's kernels keep 2^18 bytes and 2^13 records
# (CONFIG_LOG_BUF_SHIFT=18), which a race loop under kasan_multi_shot (a ~90-line report
# in each of 300 rounds) overruns; 8 MiB is 2^18 records (one per 32 bytes): 42 MiB with
# their metadata ("printk: log buffer data + meta data"), of a 2 GiB guest.  On the
# command line, not in kernels/base.config, so it holds for every kernel, prebuilt or
# built, and no build is invalidated.  A window that lost records anyway says so
# (lab.run.watch.lost_records).
DEFAULT_KERNEL_ARGS = ("nvme_core.io_timeout=180", "nvme_core.admin_timeout=180",
                       "net.ifnames=0", "log_buf_len=8M")

# The console log keeps its first 64 MiB and its last 4 MiB (and says what was cut):
# a boot prints about 40 KB, a test two marker lines and its splats, so a whole run of
# the suites is a few hundred KB; a guest past the head is flooding (a FAIL of the test
# then running, lab.run.guard).  KERNEL_LAB_CONSOLE_CAP=HEAD[,TAIL] (bytes) sets it.
CONSOLE_CAP = (64 << 20, 4 << 20)
CONSOLE_CAP_ENV = "KERNEL_LAB_CONSOLE_CAP"

# How much longer than under KVM a fixed wait in the guest may take under TCG.
TCG_SLOWDOWN = 4.0


@dataclass(frozen=True)
class VmConfig:
    """How to boot: resources, acceleration and the emulated devices."""

    cpus: int = 2
    memory: str = "2G"
    # "kvm", "tcg" (one host thread per vCPU) or "tcg-single" (the vCPUs take turns on
    # one host thread); lab.vm.accel decides whether KVM works on this host.
    accel: str = "tcg"
    boot_timeout: float = 180.0
    ssh_port: int | None = None  # None: pick a free one
    kernel_args: tuple[str, ...] = DEFAULT_KERNEL_ARGS  # appended to virtme-ng's command line
    # The console log's (head, tail) bytes (lab.proc.spawn's log_cap): a guest that
    # prints forever fills no disk.  See CONSOLE_CAP.
    console_cap: tuple[int, int] = CONSOLE_CAP
    # After a CRASH or HANG, the guest's memory is written in this format of QEMU's
    # (lab.vm.qmp.FORMATS); "" for none.  It also adds QEMU's vmcoreinfo device and
    # raises the file-size limit to the guest's memory (lab.vm.vm).
    dump: str = ""
    gdb: bool = False  # QEMU's gdbstub on a free 127.0.0.1 port (lab.vm.vm picks it)
    nvme: tuple[NvmeSpec, ...] = field(
        default_factory=lambda: (
            NvmeSpec("fast", "labfast0", 1 << 30),
            # 25 IOPS: a few O_DIRECT reads take a visible fraction of a second.
            NvmeSpec("slow", "labslow0", 256 << 20, iops_limit=25),
        )
    )

    def __post_init__(self) -> None:
        """Every value that reaches QEMU's command line, checked as `lab run` checks its
        options (lab.options: one check each): a configuration built in code, bypassing
        them, is refused all the same, whether or not a shell reads the command line."""
        set_ = object.__setattr__  # frozen: the normalised values replace the given ones
        set_(self, "cpus", parse_cpus(self.cpus))
        set_(self, "memory", parse_memory(self.memory))
        set_(self, "kernel_args", tuple(parse_param(a) for a in self.kernel_args))
        set_(self, "boot_timeout", parse_boot_timeout(self.boot_timeout))
        parse_console_cap(self.console_cap)
        if self.dump not in ("", *FORMATS):
            raise UserError(f"dump {self.dump!r}: give one of {', '.join(FORMATS)}, or '' "
                            "for none")
        if self.ssh_port is not None:
            set_(self, "ssh_port", parse_port(self.ssh_port))
        for what in ("role", "serial"):
            names = [getattr(n, what) for n in self.nvme]
            if len(set(names)) != len(names):
                raise UserError(f"NVMe {what}s {names}: give each controller its own")

    @property
    def memory_bytes(self) -> int:
        """``memory`` in bytes ("2G" -> 2 GiB)."""
        return int(self.memory[:-1]) << (30 if self.memory.endswith("G") else 20)

    @property
    def slowdown(self) -> float:
        """The factor fixed waits (device nodes, agent start, QEMU exit) are scaled by."""
        return 1.0 if self.accel == "kvm" else TCG_SLOWDOWN


def console_cap(env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """The console log's (head, tail) bytes: CONSOLE_CAP_ENV's, else CONSOLE_CAP; a
    UserError if the variable is not HEAD or HEAD,TAIL in bytes."""
    text = (os.environ if env is None else env).get(CONSOLE_CAP_ENV, "").strip()
    if not text:
        return CONSOLE_CAP
    parts = text.split(",")
    if len(parts) > 2 or not all(p.strip().isascii() and p.strip().isdecimal()
                                 for p in parts) or int(parts[0]) == 0:
        raise UserError(f"{CONSOLE_CAP_ENV}={text!r} is not HEAD or HEAD,TAIL in bytes (the "
                        "console log's first and last bytes kept); give whole numbers, "
                        "HEAD above 0, or unset it")
    head = int(parts[0])
    tail = int(parts[1]) if len(parts) == 2 else min(CONSOLE_CAP[1], head // 16)
    return parse_console_cap((head, tail), what=f"{CONSOLE_CAP_ENV}={text!r}, read as")
