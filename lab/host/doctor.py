"""Host prerequisites: what the lab needs, whether it is here, and how to get it.

Whether KVM works is lab.vm.accel's question (a real boot, not /dev/kvm); the
doctor reports its answer.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from lab import proc
from lab.vm.accel import kvm_usable

log = logging.getLogger("lab.host.doctor")

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


FIO_ENGINES = ("io_uring_cmd", "libaio")  # what the uring suite's fio jobs use


def _fio() -> Check:
    """fio with the engines the suites use: the guest runs the host's fio."""
    path = _which("fio")
    if path is None:
        return Check("fio", False, "missing", f"{APT} fio")
    out = proc.run([path, "--enghelp"], phase="doctor", timeout=60, check=False).stdout
    have = {line.strip() for line in out.splitlines()[1:]}
    lacking = [e for e in FIO_ENGINES if e not in have]
    detail = path + (f" (no {', '.join(lacking)} engine)" if lacking else "")
    return Check("fio", not lacking, detail, f"{APT} fio (3.33 or newer, for io_uring_cmd)")


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
        _fio(),
        _disk(cache),
    ]
    if result[0].ok:
        usable, why = kvm_usable(cache, image=image)
        result.append(Check("KVM", True, ("usable: " if usable else "not usable, TCG will be "
                                          "used: ") + why))
    return result


def missing(cache: Path) -> list[Check]:
    return [c for c in checks(cache) if not c.ok]
