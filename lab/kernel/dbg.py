"""Debian's debug symbols for a fetched kernel: the vmlinux of its ``-dbg`` package, opt-in.

``linux-image-RELEASE-dbg`` holds the kernel's vmlinux with DWARF and the modules' debug
files: 1.2 GB as a .deb (7.2.13-1), 7.4 GiB unpacked.  ``lab fetch --dbg SPEC`` downloads
it through the lab's private apt (lab.kernel.apt), checks it against the signed index as
every package is checked (lab.kernel.debian), and keeps only the vmlinux (427 MB for
7.2.13), unpacked straight from the package's data archive, published atomically at
``<cache>/dbg/RELEASE/vmlinux`` beside a file naming the package it came from.  gdb and
drgn read the kernel's types and symbols from it (a crash dump: lab.vm.session).
"""

from __future__ import annotations

import logging
import shutil
import tarfile
import time
from pathlib import Path
from typing import BinaryIO

from lab import atomic
from lab.errors import InfraError, UserError
from lab.kernel import debian
from lab.kernel.apt import Apt
from lab.kernel.artifact import Kernel
from lab.kernel.catalogue import load_catalogue

log = logging.getLogger("lab.kernel.dbg")

DBG_DIR = "dbg"  # in the cache
PACKAGE_FILE = "package"  # NAME=VERSION of the -dbg package the vmlinux came from


def dbg_dir(cache: Path) -> Path:
    return cache / DBG_DIR


def dbg_vmlinux(cache: Path, release: str, version: str | None = None) -> Path | None:
    """The -dbg vmlinux of ``release`` in the cache (from package ``version``, when given),
    None when it was not fetched (``lab fetch --dbg``)."""
    entry = dbg_dir(cache) / release
    vmlinux = entry / "vmlinux"
    if not vmlinux.is_file():
        return None
    if version is not None:
        try:
            pinned = (entry / PACKAGE_FILE).read_text().strip()
        except OSError:
            return None
        if pinned.rpartition("=")[2] != version:
            return None
    return vmlinux


def package_name(release: str) -> str:
    return f"linux-image-{release}-dbg"


def fetch_dbg(kernel: Kernel, cache: Path) -> Path:
    """The -dbg vmlinux of the Debian ``kernel``, downloaded when not cached; a UserError
    for a kernel that is not Debian's, an InfraError when the registry does not serve it."""
    version = kernel.package_version
    if kernel.source != "debian" or not version:
        raise UserError(f"--dbg: {kernel.spec} is not a Debian package kernel (only those "
                        "have -dbg packages); built kernels keep their own vmlinux")
    hit = dbg_vmlinux(cache, kernel.release, version)
    if hit is not None:
        log.info("dbg: %s is cached (%s)", package_name(kernel.release), hit)
        return hit
    apt = Apt(cache, load_catalogue())
    apt.ensure_lists()
    name = package_name(kernel.release)
    stanzas = apt.show(f"{name}={version}")
    if not stanzas:
        raise InfraError(f"the Debian registry does not serve {name}={version}: no debug "
                         f"symbols for {kernel.release}", phase="fetch:dbg")
    package = debian.Package.from_stanza(stanzas[0])
    plan = debian.Plan(version=version, image_package=name, packages=(package,))
    parent = dbg_dir(cache)
    parent.mkdir(parents=True, exist_ok=True)
    atomic.clean_stale_temps(parent)
    final = parent / kernel.release
    with atomic.temp_dir(parent) as tmp:
        started = time.monotonic()
        (deb,) = debian._download(apt, plan, tmp / "debs", logname=f"{name}_{version}")
        downloaded = time.monotonic()
        debian._verify(plan, [deb], tmp)  # SHA-256 and size, as the signed index says
        member = f"usr/lib/debug/lib/modules/{kernel.release}/vmlinux"
        with open(deb, "rb") as f:
            size = extract_member(f, member, tmp / "vmlinux")
        shutil.rmtree(tmp / "debs")
        (tmp / PACKAGE_FILE).write_text(f"{name}={version}\n")
        atomic.publish(tmp, final)
    log.info("dbg: %s: %.0f MB downloaded in %.1f s; vmlinux (%.0f MB) extracted in %.1f s",
             name, package.size / 1e6, downloaded - started, size / 1e6,
             time.monotonic() - downloaded)
    return final / "vmlinux"


def _ar_members(f: BinaryIO) -> tuple[str, int]:
    """Skip to the data member of a .deb (an ar archive); its (name, size)."""
    if f.read(8) != b"!<arch>\n":
        raise InfraError(f"{getattr(f, 'name', 'the package')}: not a Debian package (ar)",
                         phase="fetch:extract")
    while True:
        header = f.read(60)
        if len(header) < 60:
            raise InfraError("no data.tar member in the package", phase="fetch:extract")
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        if name.startswith("data.tar"):
            return name, size
        f.seek(size + (size & 1), 1)  # members are 2-byte aligned


def extract_member(deb: BinaryIO, member: str, to: Path) -> int:
    """The file ``member`` of a .deb's data archive (xz, zstd-less) written to ``to``, read
    as a stream (the archive is not unpacked); its size.  An InfraError when it is not
    there or is not a regular file."""
    name, _ = _ar_members(deb)
    if not name.endswith((".tar.xz", ".tar.gz", ".tar.bz2", ".tar")):
        raise InfraError(f"the package's {name}: a compression Python cannot read",
                         phase="fetch:extract")
    wanted = {member, f"./{member}"}
    with tarfile.open(fileobj=deb, mode="r|*") as tar:
        for info in tar:
            if info.name not in wanted:
                continue
            src = tar.extractfile(info) if info.isfile() else None
            if src is None:
                raise InfraError(f"{member} in the package is not a file",
                                 phase="fetch:extract")
            with open(to, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            return info.size
    raise InfraError(f"no {member} in the package", phase="fetch:extract")
