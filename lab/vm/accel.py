"""KVM or TCG: judged by a real boot, not by /dev/kvm.

On some hosts the device answers ioctls but a guest never leaves the firmware.
The probe boots the kernel about to be used with KVM and no root, and waits
(with a timeout) for its banner on the serial port; the answer is cached per
host kernel and QEMU.  Whatever decides (the user, the probe, a retry after an
oops), the choice carries its reason: the boot line, every record, the summary
and the report say which accelerator ran and why.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from lab import atomic, proc
from lab.errors import UserError
from lab.options import ACCELS

log = logging.getLogger("lab.vm.accel")

__all__ = ["ACCELS", "MODES", "Accel", "choose", "choose_accel", "expected", "kvm_usable",
           "probe_accel"]

# How each accelerator runs the guest, in words.
MODES = {"kvm": "KVM", "tcg": "TCG, multi-threaded", "tcg-single": "TCG, single-threaded"}
NEGATIVE_TTL = 24 * 3600.0  # seconds a "KVM does not work here" answer is trusted
NOT_PROBED = "not probed yet: the first boot probes it with its kernel"


def qemu_binary() -> str | None:
    return shutil.which("qemu-system-x86_64")


def probe_accel(accel: str, *, qemu: str, image: Path, timeout: float = 10.0) -> bool:
    """Boot ``image`` with ``accel`` and no root: True if the kernel printed its banner.

    Without a root the kernel panics and, with panic=-1 and -no-reboot, QEMU exits
    within a second or two where the accelerator works; where it does not, the
    banner never comes and the timeout ends QEMU.
    """
    argv = [qemu, "-accel", accel, "-display", "none", "-monitor", "none",
            "-serial", "stdio", "-no-reboot", "-m", "256", "-kernel", str(image),
            "-append", "console=ttyS0 earlyprintk=serial,ttyS0 panic=-1 root=/dev/null"]
    try:
        out = proc.run(argv, phase=f"{accel} probe", timeout=timeout, check=False).stdout
    except proc.ProcessError as exc:
        out = exc.tail
    return "Linux version" in out


def kvm_usable(cache: Path, *, image: Path | None, refresh: bool = False) -> tuple[bool, str]:
    """Whether KVM guests really boot here: a real probe, its answer cached per host."""
    qemu = qemu_binary()
    if qemu is None:
        return False, "no QEMU"
    if not os.path.exists("/dev/kvm"):
        return False, "no /dev/kvm"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is not readable and writable by this user (the kvm group)"
    # Another host kernel or QEMU is another answer; so is time, for a "no": a host
    # whose KVM was broken (a module, a nested-virt setting) may have been fixed.
    key = f"{platform.release()}|{qemu}|{os.stat(qemu).st_mtime_ns}"
    memo = cache / "kvm-probe.json"
    if not refresh and memo.exists():
        try:
            data = json.loads(memo.read_text())
        except ValueError:
            data = {}
        age = time.time() - float(data.get("when", 0))
        if data.get("key") == key and (data.get("usable") or age < NEGATIVE_TTL):
            return bool(data["usable"]), str(data["why"]) + " (cached probe)"
    if image is None:
        return False, NOT_PROBED
    usable = probe_accel("kvm", qemu=qemu, image=image)
    why = "probe boot ok" if usable else "the probe boot hung (no kernel banner in 10 s)"
    atomic.write_text(memo, json.dumps({"key": key, "usable": usable, "why": why,
                                        "when": time.time()}))
    return usable, why


@dataclass(frozen=True)
class Accel:
    """The accelerator a guest boots with ("kvm", "tcg", "tcg-single") and why."""

    name: str
    reason: str  # "asked for tcg", "KVM unusable: the probe boot hung (...)", ...

    @property
    def mode(self) -> str:
        return MODES.get(self.name, self.name)

    def describe(self) -> str:
        """"TCG, multi-threaded: KVM unusable: the probe boot hung (...)"."""
        return f"{self.mode}: {self.reason}"

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "mode": self.mode, "reason": self.reason}


def expected(cache: Path, requested: str = "auto") -> str | None:
    """The accelerator a boot would get now, without booting: the user's choice, or for
    "auto" what the cached probe says; None when only a probe boot can tell."""
    if requested != "auto":
        return requested
    usable, why = kvm_usable(cache, image=None)
    if usable:
        return "kvm"
    return None if why == NOT_PROBED else "tcg"


def choose(cache: Path, *, image: Path, requested: str = "auto") -> Accel:
    """The user's choice, or for "auto" the probe's answer, with the reason."""
    if requested not in ACCELS:
        raise UserError(f"unknown --accel {requested!r}; use {', '.join(ACCELS)}")
    if requested != "auto":
        return Accel(requested, f"asked for {requested}")
    usable, why = kvm_usable(cache, image=image)
    if usable:
        return Accel("kvm", f"KVM works ({why})")
    log.info("KVM not usable (%s): using TCG software emulation", why)
    return Accel("tcg", f"KVM unusable: {why}")


def choose_accel(cache: Path, *, image: Path, requested: str = "auto") -> str:
    """"kvm", "tcg" or "tcg-single" alone (``choose`` for the reason too)."""
    return choose(cache, image=image, requested=requested).name
