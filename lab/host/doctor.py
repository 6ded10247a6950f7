"""Host prerequisites: what the lab needs, whether it is here, and how to get it.

Whether KVM works is lab.vm.accel's question (a real boot, not /dev/kvm); the
doctor reports its answer, and for a user who may not open /dev/kvm, why and
what to run.  The fixes are exact commands: a normal user gets ``sudo`` in front
of what only root can do (Debian packages, group membership).
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import shutil
import stat
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from lab import atomic, proc
from lab.paths import CACHE_ENV, default_results_root
from lab.vm.accel import kvm_usable
from lab.vm.slots import slot_dir

log = logging.getLogger("lab.host.doctor")

APT = "apt-get install -y --no-install-recommends"
MIN_FREE_BYTES = 3 << 30  # one modular kernel (~350 MB) plus NVMe images and build room
KVM_DEVICE = Path("/dev/kvm")


@dataclass(frozen=True)
class Check:
    """One prerequisite: ``ok`` false stops `lab run`; a ``note`` works, but worse than
    it could (TCG for KVM), and its ``fix`` says how to do better."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    packages: tuple[str, ...] = ()  # the Debian packages that fix it
    note: bool = False


def _user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a uid without a name (a container's)
        return str(os.getuid())


def _sudo() -> str:
    """What a command only root may run starts with: nothing for root."""
    return "" if os.geteuid() == 0 else "sudo "


def apt_command(packages: list[str] | tuple[str, ...]) -> str:
    """The exact line that installs ``packages``, as this user must type it."""
    return f"{_sudo()}{APT} {' '.join(packages)}"


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
    return Check(name, path is not None, path or "missing", apt_command([package]),
                 packages=(package,))


def _busybox() -> Check:
    path = _which("busybox")
    fix = apt_command(["busybox-static"])
    if path is None:
        return Check("busybox", False, "missing", fix, packages=("busybox-static",))
    with open(path, "rb") as f:
        static = b"/lib64/ld-linux" not in f.read(4096)
    return Check("busybox", static, f"{path} ({'static' if static else 'dynamic'})", fix,
                 packages=("busybox-static",))


def _vng() -> Check:
    beside = Path(sys.executable).parent / "vng"  # the venv's, when it is not on PATH
    path = _which("vng") or (str(beside) if os.path.exists(beside) else None)
    return Check("virtme-ng", path is not None, path or "missing",
                 f"{sys.executable} -m pip install virtme-ng (a dependency of kernel-lab: "
                 "pip install kernel-lab or nox -s lab installs it)")


def _header(name: str, path: Path, package: str) -> Check:
    """A header the agent's cffi build includes (guest/areas/)."""
    ok = path.is_file()
    return Check(f"{name} (agent's cffi build)", ok, str(path) if ok else f"no {path}",
                 apt_command([package]), packages=(package,))


def _python_headers() -> Check:
    """Python.h of the interpreter the lab runs on: the agent's cffi extension is built
    against it (and the guest runs the same interpreter)."""
    include = Path(sysconfig.get_paths()["include"])
    ok = os.path.isfile(include / "Python.h")  # False too where the user may not look
    debian = sys.base_prefix == "/usr"  # Debian's own python3, in a venv or not
    fix = (apt_command(["python3-dev"]) if debian
           else f"install the development headers of {sys.base_prefix} (Python.h)")
    return Check("Python headers (agent's cffi build)", ok,
                 str(include / "Python.h") if ok else f"no Python.h in {include}", fix,
                 packages=("python3-dev",) if debian else ())


def _disk(cache: Path) -> Check:
    probe = _existing(cache)
    free = shutil.disk_usage(probe).free
    return Check("disk space", free >= MIN_FREE_BYTES, f"{free / 2**30:.1f} GiB free at {probe}",
                 f"free {MIN_FREE_BYTES >> 30} GiB or point {CACHE_ENV} elsewhere")


def _existing(path: Path) -> Path:
    """``path``, or its nearest ancestor that exists and that this user may see."""
    while path != path.parent:
        try:
            path.stat()
            return path
        except OSError:  # absent, or inside a directory this user may not enter
            path = path.parent
    return path


def _writable(directory: Path) -> bool:
    return os.access(directory, os.W_OK | os.X_OK)


def _owner(path: Path) -> str:
    uid = path.stat().st_uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _cache_writable(cache: Path) -> Check:
    """The cache and the directories in it that runs write (a cache made by a run as root
    is root's: a normal user's run then fails in the middle of a fetch)."""
    base = _existing(cache)
    # Tried as well: os.access says yes to root on a read-only file system or in /proc.
    tried = atomic.cannot_publish(cache / "kernels", directory=True)
    blocked = [] if _writable(base) and not tried else [base]
    if base == cache:
        blocked += sorted(p for p in cache.iterdir() if p.is_dir() and not _writable(p))
    if not blocked:
        return Check("cache", True, f"{cache} (writable)")
    first = blocked[0]
    more = f" and {len(blocked) - 1} more in it" if len(blocked) > 1 else ""
    owner = _owner(first)
    where = "" if first == cache or base == cache else f"{cache}: "
    chown = (f"{_sudo()}chown -R {_user()}: {cache}, or " if owner != _user() and base == cache
             else "")
    return Check("cache", False,
                 f"{where}{first} is not writable by {_user()} (owner {owner}){more}",
                 f"{chown}give a directory of yours: {CACHE_ENV}=DIR or --cache DIR")


def _results_writable(results: Path) -> Check:
    base = _existing(results)
    if not base.is_dir():
        what = "is" if base == results else f"cannot be made: {base} is"
        return Check("results", False, f"{results} {what} a file, not a directory",
                     "give lab run --results DIR a directory (or a path to make one)")
    # A run directory is made inside it: tried, since root passes os.access in /proc.
    if _writable(base) and not atomic.cannot_publish(results / "run", directory=True):
        return Check("results", True, f"{results} (writable)")
    return Check("results", False, f"{base} is not writable by {_user()}: run directories go "
                 f"to {results}", "run from a directory you may write to, or give "
                 "lab run --results DIR")


@dataclass(frozen=True)
class DeviceAccess:
    """Who may open a device node, and who this process is."""

    mode: str  # as ls shows it: "crw-rw----"
    owner: str
    group: str
    group_rw: bool  # the group may read and write it
    user: str
    listed: bool  # the group database puts the user in that group (or it is their primary)
    has_group: bool  # this process has that group (a login before `usermod -aG` has not)


def device_access(path: Path) -> DeviceAccess:
    st = path.stat()
    user = _user()
    try:
        group = grp.getgrgid(st.st_gid)
        gname, members = group.gr_name, group.gr_mem
    except KeyError:
        gname, members = str(st.st_gid), []
    try:
        primary = pwd.getpwuid(os.getuid()).pw_gid
    except KeyError:
        primary = os.getgid()
    return DeviceAccess(
        mode=stat.filemode(st.st_mode), owner=_owner(path), group=gname,
        group_rw=st.st_gid != 0 and st.st_mode & 0o060 == 0o060, user=user,
        listed=user in members or primary == st.st_gid,
        has_group=st.st_gid in os.getgroups() or os.getgid() == st.st_gid)


def kvm_advice(access: DeviceAccess, *, sudo: str) -> tuple[str, str]:
    """Why a user may not open /dev/kvm, and the command that changes it."""
    if access.group_rw and access.listed and not access.has_group:
        return (f"{access.user} was added to group {access.group} after this login began",
                f"log in again (or start a shell with `newgrp {access.group}`)")
    if access.group_rw:
        return (f"{access.user} is not in group {access.group}",
                f"{sudo}usermod -aG {access.group} {access.user}, then log in again")
    return (f"{access.user} may not open it",
            f"ask root to give {access.user} read-write access to {KVM_DEVICE}")


def _kvm_access() -> Check | None:
    """Why this user may not open /dev/kvm, and what to run; None when they may (then the
    probe boot decides).  TCG works meanwhile: a note, not a stop."""
    if not KVM_DEVICE.exists():
        return Check("KVM", True, f"no {KVM_DEVICE} (no KVM module loaded, or a VM without "
                     "nested virtualization): TCG (software emulation) is used",
                     "load kvm_intel or kvm_amd, or enable nested virtualization for this VM",
                     note=True)
    if os.access(KVM_DEVICE, os.R_OK | os.W_OK):
        return None
    access = device_access(KVM_DEVICE)
    why, fix = kvm_advice(access, sudo=_sudo())
    return Check("KVM", True, f"{KVM_DEVICE} is {access.mode} {access.owner}:{access.group} "
                 f"and {why}; meanwhile TCG (software emulation, several times slower) is used",
                 fix, note=True)


def _kvm(cache: Path, image: Path | None) -> Check:
    access = _kvm_access()
    if access is not None:
        return access
    usable, why = kvm_usable(cache, image=image)
    return Check("KVM", True, ("usable: " if usable else "not usable, TCG will be used: ") + why)


def _isolation() -> Check:
    """Whether guests get the allow-listed view of the host (lab.vm.sandbox): a host that
    refuses the namespace it needs stops `lab run`, unless the user accepted guests that
    read what the lab's user can (a note then)."""
    from lab.vm.sandbox import REFUSED_FIX, host_isolation

    iso = host_isolation()
    if iso.files:
        return Check("guest isolation", True, iso.describe())
    return Check("guest isolation", iso.accepted, iso.describe(), REFUSED_FIX,
                 note=iso.accepted)


def _cpu_slots() -> Check:
    """The per-user directory of the host's CPU slots (lab.vm.slots): without it guests
    boot without taking turns for the cores, and races overlap less."""
    directory = slot_dir()
    base = _existing(directory)
    if _writable(base):
        return Check("CPU slots", True, str(directory))
    return Check("CPU slots", True, f"{base} is not writable by {_user()}: guests will not "
                 "take turns for the host's cores", f"make {directory} writable by {_user()}",
                 note=True)


# What a kernel the lab builds (debian-src:, git:, worktree:, tree:) needs beyond the
# lab itself (FACTS.md, the build tools): name, binaries or header, Debian package.
BUILD_TOOLS = (
    ("git", ("git",), "git"),  # git:, worktree: check out in a clone; tree: lists with it
    ("make", ("make",), "make"),
    ("flex", ("flex",), "flex"),
    ("bison", ("bison",), "bison"),
    ("bc", ("bc",), "bc"),
)
BUILD_HEADERS = (
    ("libelf headers", Path("/usr/include/gelf.h"), "libelf-dev"),  # objtool
    ("OpenSSL headers", Path("/usr/include/openssl/opensslv.h"), "libssl-dev"),
)
BUILD_SECTION = "source builds"


def build_checks() -> list[Check]:
    """What kernel builds need, as notes: a run of prebuilt kernels (debian:, an image)
    needs none of it, so none of it stops `lab run`; a build without it fails in make
    or git, which this names beforehand."""
    found: list[tuple[str, str | None, str]] = [
        (name, _which(*binaries), package) for name, binaries, package in BUILD_TOOLS]
    found += [(name, str(path) if path.is_file() else None, package)
              for name, path, package in BUILD_HEADERS]
    return [Check(f"{BUILD_SECTION}: {name}", True,
                  where or "missing: debian-src:, git:, worktree: and tree: kernels cannot "
                  "be built", apt_command([package]), note=where is None)
            for name, where, package in found]


FIO_ENGINES = ("io_uring_cmd", "libaio")  # what the uring suite's fio jobs use


def _fio() -> Check:
    """fio with the engines the suites use: the guest runs the host's fio."""
    path = _which("fio")
    if path is None:
        return Check("fio", False, "missing", apt_command(["fio"]), packages=("fio",))
    out = proc.run([path, "--enghelp"], phase="doctor", timeout=60, check=False).stdout
    have = {line.strip() for line in out.splitlines()[1:]}
    lacking = [e for e in FIO_ENGINES if e not in have]
    detail = path + (f" (no {', '.join(lacking)} engine)" if lacking else "")
    return Check("fio", not lacking, detail,
                 apt_command(["fio"]) + " (3.33 or newer, for io_uring_cmd)",
                 packages=("fio",))


def checks(cache: Path, *, image: Path | None = None,
           results: Path | None = None) -> list[Check]:
    """Every prerequisite, in the order a person would fix them.  ``results``: where run
    directories go (default ./results)."""
    result = [
        # Where a run writes first: the cheapest to fix, and what a normal user most
        # often lacks (a cache left by a run as root, a directory of root's).
        _cache_writable(cache),
        _results_writable(results or default_results_root()),
        _tool("QEMU", ("qemu-system-x86_64",), "qemu-system-x86"),
        _vng(),
        _tool("depmod", ("depmod",), "kmod"),
        _busybox(),
        _tool("sshd", ("sshd",), "openssh-server"),
        _tool("dpkg-deb", ("dpkg-deb",), "dpkg"),
        _tool("apt-get", ("apt-get",), "apt"),
        _tool("C compiler (agent's cffi build)", ("cc", "gcc"), "gcc"),
        _header("C library headers", Path("/usr/include/stdio.h"), "libc6-dev"),
        _header("kernel uapi headers", Path("/usr/include/linux/io_uring.h"), "linux-libc-dev"),
        _python_headers(),
        _fio(),
        _disk(cache),
        _cpu_slots(),
        _isolation(),
    ]
    if _which("qemu-system-x86_64"):
        result.append(_kvm(cache, image))
    return result + build_checks()


def missing(cache: Path, *, results: Path | None = None) -> list[Check]:
    return [c for c in checks(cache, results=results) if not c.ok]


def packages_to_install(found: list[Check]) -> list[str]:
    """The Debian packages that the failed checks name, each once, in check order."""
    return list(dict.fromkeys(p for c in found if not c.ok for p in c.packages))
