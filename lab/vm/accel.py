"""KVM or TCG: judged by a real boot, not by /dev/kvm.

On some hosts the device answers ioctls but a guest never leaves the firmware.
The probe boots the kernel about to be used with KVM and no root, and waits
(with a timeout) for its banner on the serial port; the answer is cached per
host kernel and QEMU.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import time
from pathlib import Path

from lab import atomic, proc
from lab.errors import UserError

log = logging.getLogger("lab.vm.accel")

ACCELS = ("auto", "kvm", "tcg", "tcg-single")
NEGATIVE_TTL = 24 * 3600.0  # seconds a "KVM does not work here" answer is trusted


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
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "no usable /dev/kvm"
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
        return False, "not probed yet: the first boot probes it with its kernel"
    usable = probe_accel("kvm", qemu=qemu, image=image)
    why = ("a KVM guest printed its banner" if usable
           else "/dev/kvm exists but a KVM guest printed nothing in 10 s")
    atomic.write_text(memo, json.dumps({"key": key, "usable": usable, "why": why,
                                        "when": time.time()}))
    return usable, why


def choose_accel(cache: Path, *, image: Path, requested: str = "auto") -> str:
    """"kvm", "tcg" or "tcg-single": the user's choice, or the probe's answer for "auto"."""
    if requested not in ACCELS:
        raise UserError(f"unknown --accel {requested!r}; use {', '.join(ACCELS)}")
    if requested != "auto":
        return requested
    usable, why = kvm_usable(cache, image=image)
    if not usable:
        log.info("KVM not usable (%s): using TCG software emulation", why)
    return "kvm" if usable else "tcg"
