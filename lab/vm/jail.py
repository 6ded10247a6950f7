"""The guest's view of the host: an allow-list, built in a private mount namespace.

virtme-ng exports a directory of the host to the guest over 9p (``security_model=none``:
QEMU opens the files, with its own rights, for the guest).  Exporting ``/`` hands a guest
that runs tests as root everything QEMU can read: the host's ``/etc/shadow``, every home,
``/proc`` (other processes' environments, ``/proc/kcore``), ``/run``'s secrets, other
runs' directories.  So the lab exports a tree of its own instead, ``root``: a tmpfs,
mounted where only this process and its children see it (an unshared mount namespace,
inside a user namespace when the lab is not root), holding

- the system's programs and libraries (``/usr``, ``/bin``, ``/sbin``, ``/lib*``), bound
  read-only as they are (a symbolic link stays one: merged /usr);
- a copy of what the guest's programs read of ``/etc`` (ETC_ALLOW), and of that only what
  any user of the host may read (world-readable files and the directories on the way to
  them), never the password hashes nor a private key;
- the few directories the guest needs (``binds``: the VM's own directory, the guest
  scripts, the agent's interpreter, the kernel's modules), each at its own path;
- empty mount points for what the guest mounts itself (``/dev``, ``/proc``, ``/run``...).

Nothing else of the host is in the tree.  QEMU itself runs with the host's view (it
needs its firmware, the kernel image and ``/dev/kvm``); only what it exports changes.
The namespace ends with QEMU, and its mounts with it: the host sees an empty directory.

Run as ``python jail.py PLAN.json -- ARGV...`` (or ``--probe``): a script of the standard
library only, executed before any of the lab is imported, so that it costs one interpreter
start (lab.vm.sandbox builds the plan and decides whether the host allows it).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import resource
import shutil
import signal
import stat
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

# What the guest's programs read of /etc (the loader, name services, sshd, ip, modprobe,
# mkfs, Python, the alternatives /usr/bin links through): nothing else is copied, so the
# host's proxy settings (environment, wgetrc, pip.conf, npmrc), package sources and
# credentials, machine-id and hostname stay on the host.
ETC_ALLOW = frozenset((
    "alternatives", "debian_version", "default", "depmod.d", "ethertypes", "gai.conf",
    "group", "host.conf", "hosts", "iproute2", "ld.so.cache", "ld.so.conf", "ld.so.conf.d",
    "ld.so.preload", "locale.alias", "localtime", "login.defs", "mke2fs.conf", "modprobe.d",
    "mtab", "netconfig", "networks", "nsswitch.conf", "os-release", "passwd", "protocols",
    "python3", "rpc", "services", "shells", "ssh", "terminfo", "timezone", "udev",
    "xattr.conf",
)) | frozenset(f"python3.{minor}" for minor in range(6, 40))
SYSTEM = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
# What the guest mounts itself, or virtme-ng lays a writable overlay on: present, empty.
EMPTY = ("dev", "proc", "sys", "run", "tmp", "var", "home", "root", "mnt", "opt", "srv")

_libc = ctypes.CDLL(None, use_errno=True)


class JailError(Exception):
    pass


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise JailError(f"{what}: {os.strerror(err)} ({errno.errorcode.get(err, err)})")


def _mount(src: str, dst: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(src.encode(), dst.encode(), fstype.encode() if fstype else None,
                       ctypes.c_ulong(flags), data.encode() if data else None),
           f"mount {src} on {dst}")


def enter_namespace() -> bool:
    """A mount namespace of this process's own (and a user namespace first when it is not
    root, mapping it to root there), every mount in it private."""
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNS if uid == 0 else CLONE_NEWNS | CLONE_NEWUSER
    _check(_libc.unshare(flags), "unshare")
    if uid != 0:
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"0 {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"0 {gid} 1")
    _mount("none", "/", None, MS_REC | MS_PRIVATE)
    return uid != 0


def _read_only(path: str) -> None:
    """Remount a bind read-only, keeping the flags a user namespace may not drop."""
    locked = 0
    st = os.statvfs(path)
    for bit, flag in ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV),
                      (os.ST_NOEXEC, MS_NOEXEC)):
        if st.f_flag & bit:
            locked |= flag
    _mount("none", path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | locked)


def bind(src: str, root: str, *, recursive: bool) -> None:
    """``src`` at its own path inside ``root``, read-only."""
    dst = root + src
    if os.path.islink(dst):
        return  # already in the tree as a link (a venv's python): its target is bound itself
    if os.path.isdir(src):
        os.makedirs(dst, exist_ok=True)
    elif not os.path.lexists(dst):  # (a file already in the tree, a link of it, is covered)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        open(dst, "a").close()  # a mount point
    _mount(src, dst, None, MS_BIND | (MS_REC if recursive else 0))
    with contextlib.suppress(JailError):
        _read_only(dst)  # else QEMU still exports the tree read-only (readonly=on)


def _world_readable(st: os.stat_result) -> bool:
    need = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(st.st_mode) else 0)
    return st.st_mode & need == need


def copy_etc(src: str, dst: str, allow: frozenset[str] = ETC_ALLOW) -> None:
    """The entries of ``src`` (/etc) that ``allow`` names, copied to ``dst``, and of them
    only what any user may read: world-readable regular files and links, in world-readable
    directories; never a private key (the password hashes are not on the list:
    ``write_shadow`` makes the tree's own)."""
    os.makedirs(dst, exist_ok=True)
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        target = dst if rel == "." else os.path.join(dst, rel)
        if rel == ".":
            dirnames[:] = [n for n in dirnames if n in allow]
            filenames = [n for n in filenames if n in allow]
        keep = []
        for name in dirnames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(path), os.path.join(target, name))
            elif _world_readable(st):
                os.mkdir(os.path.join(target, name), stat.S_IMODE(st.st_mode))
                keep.append(name)
        dirnames[:] = keep
        for name in filenames:
            path = os.path.join(dirpath, name)
            if name.endswith("_key") or name.endswith(".key"):
                continue
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(path), os.path.join(target, name))
            elif stat.S_ISREG(st.st_mode) and _world_readable(st):
                try:
                    shutil.copy2(path, os.path.join(target, name), follow_symlinks=False)
                except OSError:
                    continue  # unreadable after all (an ACL): not the guest's


def write_shadow(etc: str) -> None:
    """A shadow file with no hash of the host's: every account of the copied passwd
    locked (``!``); guest/boot.sh then makes root's usable for key logins."""
    names = []
    with open(os.path.join(etc, "passwd"), encoding="utf-8", errors="replace") as f:
        for line in f:
            name = line.split(":", 1)[0].strip()
            if name and not name.startswith("#"):
                names.append(name)
    fd = os.open(os.path.join(etc, "shadow"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    with os.fdopen(fd, "w") as f:
        f.writelines(f"{name}:!:1::::::\n" for name in names)


# Where a normal user's tree keeps its copies of the set-ID programs (strip_set_id): under
# the guest's /run, which the guest mounts its own tmpfs over.
PLAIN_COPIES = "/run/.kernel-lab-plain"
BIN_DIRS = ("usr/bin", "usr/sbin", "bin", "sbin", "usr/local/bin", "usr/local/sbin")


def strip_set_id(root: str) -> None:
    """Each set-user/group-ID program of the tree's bin directories overlaid with a copy
    without those bits.

    In a user namespace the host's root is not mapped: QEMU sees the system's files owned
    by the overflow user (65534), and so does the guest, where `mount` (set-user-ID root on
    the host) would then run as that user and refuse ("must be superuser").  The guest's
    root needs no set-ID program, so none keeps the bits."""
    seen = set()
    for rel in BIN_DIRS:
        directory = os.path.realpath(os.path.join(root, rel))
        if directory in seen or not os.path.isdir(directory):
            continue
        seen.add(directory)
        for entry in os.scandir(directory):
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode) or not st.st_mode & (stat.S_ISUID | stat.S_ISGID):
                continue
            copy = os.path.join(root + PLAIN_COPIES, f"{len(seen)}-{entry.name}")
            os.makedirs(os.path.dirname(copy), exist_ok=True)
            try:
                shutil.copyfile(entry.path, copy)
            except OSError:
                continue  # not readable by the lab's user: the guest cannot run it anyway
            os.chmod(copy, stat.S_IMODE(st.st_mode) & ~(stat.S_ISUID | stat.S_ISGID))
            _mount(copy, entry.path, None, MS_BIND)


def build(plan: dict[str, object]) -> None:
    """The allow-listed tree at ``plan["root"]`` (see the module's docstring)."""
    root = str(plan["root"])
    _mount("kernel-lab-export", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    for name in SYSTEM:
        path = "/" + name
        if os.path.islink(path):
            os.symlink(os.readlink(path), root + path)
        elif os.path.isdir(path):
            bind(path, root, recursive=True)
    copy_etc("/etc", root + "/etc")
    if os.path.exists(root + "/etc/passwd"):
        write_shadow(root + "/etc")
    for name in EMPTY:
        os.makedirs(root + "/" + name, exist_ok=True)
    if plan.get("user_namespace"):
        strip_set_id(root)
    binds = plan.get("binds", [])
    assert isinstance(binds, list)
    for path in binds:
        bind(str(path), root, recursive=False)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--probe"]:
        # Can this host give a process a mount namespace of its own (and, not as root, a
        # user namespace)?  One line on stderr when not: what refused.
        try:
            enter_namespace()
            _mount("none", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700")
        except (JailError, OSError) as exc:
            print(exc, file=sys.stderr)
            return 1
        return 0
    if len(argv) < 3 or argv[1] != "--":
        print("usage: jail.py PLAN.json -- ARGV... | jail.py --probe", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        plan = json.load(f)
    tmpdir = str(plan["tmpdir"])
    if plan.get("walls"):
        try:
            plan["user_namespace"] = enter_namespace()
            build(plan)
            # virtme-run's temporary files (the guest writes its return-code file without
            # end) on a tmpfs of their own, gone with the namespace.
            _mount("kernel-lab-tmp", tmpdir, "tmpfs", MS_NOSUID | MS_NODEV,
                   f"mode=0700,size={int(plan['tmp_bytes'])}")
        except (JailError, OSError) as exc:
            print(f"kernel-lab: jail: {exc}", file=sys.stderr)
            return 125
    os.environ["TMPDIR"] = tmpdir
    fsize = int(plan["max_file_bytes"])
    # No file QEMU or virtme-run writes outgrows the largest NVMe image; a write past it
    # fails (EFBIG) instead of killing QEMU (SIGXFSZ's default).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    os.execvp(argv[2], argv[2:])
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
