"""Host prerequisites: what the lab needs, whether it is here, and how to get it.

KVM is judged by a real boot, not by /dev/kvm: on some hosts the device
answers ioctls but a guest never leaves the firmware.  The probe boots the
kernel about to be used with KVM and no root, and waits (with a timeout) for
its banner on the serial port; the answer is cached per host kernel and QEMU.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from lab import proc
from lab.errors import UserError

log = logging.getLogger("lab.doctor")

APT = "apt-get install -y --no-install-recommends"
MIN_FREE_BYTES = 3 << 30  # one modular kernel (~350 MB) plus NVMe images and build room


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _which(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or next(
            (p for d in ("/usr/sbin", "/sbin") if os.access(p := f"{d}/{name}", os.X_OK)), None
        )
        if found:
            return found
    return None


def _tool(name: str, binaries: tuple[str, ...], package: str) -> Check:
    path = _which(*binaries)
    return Check(name, path is not None, path or "missing", f"{APT} {package}")


def _busybox() -> Check:
    path = _which("busybox")
    if path is None:
        return Check("busybox", False, "missing", f"{APT} busybox-static")
    with open(path, "rb") as f:
        static = b"/lib64/ld-linux" not in f.read(4096)
    return Check("busybox", static, f"{path} ({'static' if static else 'dynamic'})",
                 f"{APT} busybox-static")


def _vng() -> Check:
    path = _which("vng") or (
        str(Path(sys.executable).parent / "vng")
        if (Path(sys.executable).parent / "vng").exists() else None
    )
    return Check("virtme-ng", path is not None, path or "missing",
                 "pip install virtme-ng (nox -s lab installs it)")


def _disk(cache: Path) -> Check:
    probe = cache
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    return Check("disk space", free >= MIN_FREE_BYTES, f"{free / 2**30:.1f} GiB free at {probe}",
                 f"free {MIN_FREE_BYTES >> 30} GiB or point KERNEL_LAB_CACHE elsewhere")


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
    qemu = _which("qemu-system-x86_64")
    if qemu is None:
        return False, "no QEMU"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "no usable /dev/kvm"
    key = f"{platform.release()}|{qemu}|{os.stat(qemu).st_mtime_ns}"
    memo = cache / "kvm-probe.json"
    if not refresh and memo.exists():
        data = json.loads(memo.read_text())
        if data.get("key") == key:
            return bool(data["usable"]), str(data["why"]) + " (cached probe)"
    if image is None:
        return False, "not probed yet: the first boot probes it with its kernel"
    usable = probe_accel("kvm", qemu=qemu, image=image)
    why = ("a KVM guest printed its banner" if usable
           else "/dev/kvm exists but a KVM guest printed nothing in 10 s")
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(json.dumps({"key": key, "usable": usable, "why": why}))
    return usable, why


def choose_accel(cache: Path, *, image: Path, requested: str = "auto") -> str:
    """"kvm" or "tcg": the user's choice, or the probe's answer for "auto"."""
    if requested not in ("auto", "kvm", "tcg"):
        raise UserError(f"unknown --accel {requested!r}; use auto, kvm or tcg")
    if requested != "auto":
        return requested
    usable, why = kvm_usable(cache, image=image)
    if not usable:
        log.info("KVM not usable (%s): using TCG software emulation", why)
    return "kvm" if usable else "tcg"


def checks(cache: Path, *, image: Path | None = None) -> list[Check]:
    """Every prerequisite, in the order a person would fix them."""
    result = [
        _tool("QEMU", ("qemu-system-x86_64",), "qemu-system-x86"),
        _vng(),
        _tool("depmod", ("depmod",), "kmod"),
        _busybox(),
        _tool("sshd", ("sshd",), "openssh-server"),
        _tool("ssh-keygen", ("ssh-keygen",), "openssh-client"),
        _tool("dpkg-deb", ("dpkg-deb",), "dpkg"),
        _tool("apt-get", ("apt-get",), "apt"),
        _tool("C compiler (agent's cffi build)", ("cc", "gcc"), "gcc libc6-dev python3-dev"),
        _disk(cache),
    ]
    if result[0].ok:
        usable, why = kvm_usable(cache, image=image)
        result.append(Check("KVM", True, ("usable: " if usable else "not usable, TCG will be "
                                          "used: ") + why))
    return result


def missing(cache: Path) -> list[Check]:
    return [c for c in checks(cache) if not c.ok]
