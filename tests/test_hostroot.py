"""Which host directories the guest reads cached (lab.vm.hostroot), and the fstab boot.sh mounts."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from lab.vm import hostroot


def test_the_fstab_mounts_the_cached_export_then_binds_then_the_tmpfs(tmp_path: Path) -> None:
    modules = tmp_path / "lib" / "modules" / "7.2.13"
    modules.mkdir(parents=True)
    lines = hostroot.fstab(modules, tmpfs="/run/kernel-lab").splitlines()
    source, target, fstype, options = lines[0].split()[:4]
    assert (source, target, fstype) == (hostroot.TAG, hostroot.MOUNTPOINT, "9p")
    assert {"ro", "cache=loose", "trans=virtio", "X-mount.mkdir"} <= set(options.split(","))
    binds = [line.split() for line in lines[1:-1]]
    assert all(b[2:4] == ["none", "bind"] and b[0] == hostroot.MOUNTPOINT + b[1] for b in binds)
    assert [b[1] for b in binds] == hostroot.fast_dirs(modules)
    assert str(modules) in [b[1] for b in binds]
    assert lines[-1].split()[:3] == ["kernel-lab", "/run/kernel-lab", "tmpfs"]


def test_the_binds_cover_libc_the_interpreter_and_never_what_virtme_ng_sets_up() -> None:
    dirs = hostroot.fast_dirs(None)
    libc = hostroot.libc_dir()
    assert libc is not None and any(Path(libc).is_relative_to(d) for d in dirs)
    exe = Path(os.path.realpath(sys.executable))
    assert any(exe.is_relative_to(d) for d in dirs)
    stdlib = Path(os.path.realpath(os.path.dirname(os.__file__)))
    assert any(stdlib.is_relative_to(d) for d in dirs)
    for never in ("/", "/usr", "/usr/lib", "/etc", "/tmp", "/run", "/root", "/home"):
        assert never not in dirs
    # Outermost only: no bind inside another.
    assert not [(a, b) for a in dirs for b in dirs if a != b and Path(a).is_relative_to(b)]


def test_libc_is_found_in_the_mapped_libraries() -> None:
    maps = ("7f00-7f01 r-xp 00000000 08:01 123 /usr/lib/x86_64-linux-gnu/libm.so.6\n"
            "7f02-7f03 r-xp 00000000 08:01 124 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
            "7f04-7f05 rw-p 00000000 00:00 0 \n")
    assert hostroot.libc_dir(maps) == os.path.realpath("/usr/lib/x86_64-linux-gnu")
    assert hostroot.libc_dir("7f04-7f05 rw-p 00000000 00:00 0 [heap]\n") is None


def test_a_field_with_whitespace_is_escaped_as_fstab_reads_it() -> None:
    assert hostroot._field("/opt/my python\\x") == "/opt/my\\040python\\134x"


def test_the_export_is_read_only_with_remapped_inodes() -> None:
    opts = hostroot.qemu_opts()
    fsdev = opts[opts.index("-fsdev") + 1]
    assert "readonly=on" in fsdev and "multidevs=remap" in fsdev and "path=/" in fsdev
    assert f"mount_tag={hostroot.TAG}" in opts[opts.index("-device") + 1]
    tree = hostroot.qemu_opts(Path("/run/x/export"))  # the guest's tree (lab.vm.sandbox)
    assert "path=/run/x/export," in tree[tree.index("-fsdev") + 1]


def test_in_the_lab_tree_the_modules_are_bound_where_virtme_ng_looks(tmp_path: Path) -> None:
    modules = tmp_path / "lib" / "modules" / "7.2.0"
    modules.mkdir(parents=True)
    lines = hostroot.fstab(modules, tmpfs="/run/kernel-lab", release="7.2.0").splitlines()
    assert lines[-2].split()[:4] == [hostroot.MOUNTPOINT + str(modules), "/lib/modules/7.2.0",
                                     "none", "bind,X-mount.mkdir"]
    assert all(line.split()[1] != "/lib/modules/7.2.0"
               for line in hostroot.fstab(modules, tmpfs="/run/kernel-lab").splitlines())
