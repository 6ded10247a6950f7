"""--dump's parts that need no guest: the option, the format a kernel gets, the kernel
parameters and QEMU arguments it adds, the file-size limit, a panic read off the console,
and the -dbg vmlinux's cache entry and extraction (tests/test_dump_real.py: for real)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from lab.errors import InfraError, UserError
from lab.kernel.artifact import Kernel
from lab.kernel.dbg import PACKAGE_FILE, dbg_vmlinux, extract_member
from lab.options import GuestOptions
from lab.vm.session import dump_format, kernel_args
from lab.vm.timeline import Timeline
from lab.vm.vm import Vm, qemu_opts
from lab.vm.vmconfig import VmConfig


def _kernel(variant: str = "prebuilt") -> Kernel:
    return Kernel(spec="debian:7.2", release="7.2.13+deb14-amd64", image=Path("/k/vmlinuz"),
                  variant=variant)


@pytest.mark.parametrize(("given", "variant", "fmt"), [
    ("auto", "prebuilt", ""), ("auto", "debug", "kdump-zlib"),
    ("auto", "aio-off+debug", "kdump-zlib"), ("auto", "base", ""),
    ("off", "debug", ""), ("elf", "base", "elf"), ("kdump-zlib", "prebuilt", "kdump-zlib"),
])
def test_the_format_each_kernel_is_dumped_in(given: str, variant: str, fmt: str) -> None:
    assert dump_format(GuestOptions(dump=given).dump, _kernel(variant)) == fmt


def test_a_dump_option_that_is_no_format_is_refused() -> None:
    with pytest.raises(UserError, match=r"^--dump 'raw': use auto, off, kdump-zlib, elf"):
        GuestOptions(dump="raw")
    with pytest.raises(UserError, match="dump 'raw'"):
        VmConfig(dump="raw")


def test_dumping_keeps_a_panicked_kernel_and_the_users_parameter_wins() -> None:
    args = kernel_args(_kernel(), ["panic=5"], dump=True)
    assert args.index("panic=0") < args.index("panic=5")  # the kernel takes the last
    assert "kernel_lab.vmcoreinfo" in args  # guest/boot.sh loads qemu_fw_cfg
    assert "panic=0" not in kernel_args(_kernel(), [])
    boot = (Path(__file__).parents[1] / "guest" / "boot.sh").read_text()
    assert '*" kernel_lab.vmcoreinfo "*) modprobe -q qemu_fw_cfg' in boot


def test_qemu_gets_its_qmp_socket_and_with_dumps_the_vmcoreinfo_device(tmp_path: Path) -> None:
    sock = tmp_path / "qmp.sock"
    plain = qemu_opts(VmConfig(), vmdir=tmp_path, port=2222, qmp_socket=sock)
    assert plain[plain.index("-qmp") + 1] == f"unix:{sock},server=on,wait=off"
    assert "vmcoreinfo" not in plain
    dumping = qemu_opts(VmConfig(dump="kdump-zlib"), vmdir=tmp_path, port=2222)
    assert dumping[dumping.index("vmcoreinfo") - 1] == "-device" and "-qmp" not in dumping


def test_the_file_size_limit_lets_a_dump_of_all_memory_through(tmp_path: Path) -> None:
    def limit(**cfg: object) -> int:
        vm = Vm(_kernel(), run_dir=tmp_path, cache=tmp_path,
                config=VmConfig(**cfg))  # type: ignore[arg-type]
        return vm._max_file_bytes()

    assert limit() == 1 << 30  # the largest NVMe image
    assert limit(dump="kdump-zlib") > 2 << 30  # a 2 GiB guest's every page, and headers
    assert limit(dump="elf", memory="6G") > 6 << 30
    assert limit(dump="elf", memory="512M") == 1 << 30


def test_a_long_vm_directory_puts_the_socket_where_an_address_holds_it(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    vm = Vm(_kernel(), run_dir=deep, cache=tmp_path)
    sock = vm._socket_path("qmp.sock")
    try:
        assert len(str(sock)) <= 107 and sock.parent.stat().st_mode & 0o777 == 0o700
        assert vm._socket_path("gdb.sock") == sock.parent / "gdb.sock"  # the same directory
    finally:
        vm.stop()
    assert not sock.parent.exists()
    assert Vm(_kernel(), run_dir=tmp_path, cache=tmp_path)._socket_path("qmp.sock").parent == \
        tmp_path / "vm"


PANIC = [
    b"[   41.1] sysrq: Trigger a crash\r\n",
    b"[   41.2] Kernel panic - not syncing: sysrq triggered crash\r\n",
    b"[   41.2] CPU: 1 UID: 0 PID: 812 Comm: lab-dumpee Not tainted 7.2.13+deb14-amd64\r\n",
    b"[   41.3] Call Trace:\r\n",
    b"[   41.4] Kernel Offset: 0x3c00000 from 0xffffffff81000000\r\n",
    b"[   41.4] ---[ end Kernel panic - not syncing: sysrq triggered crash ]---\r\n",
]


def test_a_panic_on_the_console_makes_the_guest_dead_once_all_of_it_is_printed() -> None:
    tl = Timeline()
    tl.on_console(b"[    1.0] Linux version 7.2.13\n")
    assert tl.dead() is None
    for line in PANIC[:-1]:
        tl.on_console(line)
        assert tl.dead() is None  # its trace is still coming: the evidence
    tl.on_console(PANIC[-1])
    assert tl.dead() == "the kernel panicked: sysrq triggered crash"


def test_a_panic_without_printk_times_is_seen_too() -> None:
    tl = Timeline()
    for line in PANIC:
        tl.on_console(line.split(b"] ", 1)[1])
    assert tl.dead() == "the kernel panicked: sysrq triggered crash"


def _deb(members: dict[str, bytes]) -> bytes:
    """A .deb: an ar archive of debian-binary, control.tar.xz and data.tar.xz."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        link = tarfile.TarInfo("./usr/lib/debug/boot/vmlinux-R")
        link.type, link.linkname = tarfile.SYMTYPE, "../lib/modules/R/vmlinux"
        tar.addfile(link)
    out = b"!<arch>\n"
    for name, body in (("debian-binary", b"2.0\n"), ("control.tar.xz", b"x" * 3),
                       ("data.tar.xz", data.getvalue())):
        out += f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(body):<10}`\n".encode()
        out += body + (b"\n" if len(body) & 1 else b"")
    return out


def test_only_the_vmlinux_is_taken_from_the_package(tmp_path: Path) -> None:
    deb = _deb({"./usr/lib/debug/lib/modules/R/kernel/x.ko": b"ko",
                "./usr/lib/debug/lib/modules/R/vmlinux": b"\x7fELF debug"})
    size = extract_member(io.BytesIO(deb), "usr/lib/debug/lib/modules/R/vmlinux",
                          tmp_path / "vmlinux")
    assert (tmp_path / "vmlinux").read_bytes() == b"\x7fELF debug" and size == 10
    with pytest.raises(InfraError, match="not a file"):
        extract_member(io.BytesIO(deb), "usr/lib/debug/boot/vmlinux-R", tmp_path / "l")
    with pytest.raises(InfraError, match="no usr/lib/debug/lib/modules/S/vmlinux"):
        extract_member(io.BytesIO(deb), "usr/lib/debug/lib/modules/S/vmlinux", tmp_path / "s")
    with pytest.raises(InfraError, match="not a Debian package"):
        extract_member(io.BytesIO(b"PK\x03\x04"), "x", tmp_path / "z")


def test_the_cached_vmlinux_is_found_for_its_release_and_package(tmp_path: Path) -> None:
    assert dbg_vmlinux(tmp_path, "7.2.13+deb14-amd64") is None
    entry = tmp_path / "dbg" / "7.2.13+deb14-amd64"
    entry.mkdir(parents=True)
    (entry / "vmlinux").write_bytes(b"\x7fELF")
    (entry / PACKAGE_FILE).write_text("linux-image-7.2.13+deb14-amd64-dbg=7.2.13-1\n")
    assert dbg_vmlinux(tmp_path, "7.2.13+deb14-amd64") == entry / "vmlinux"
    assert dbg_vmlinux(tmp_path, "7.2.13+deb14-amd64", "7.2.13-1") == entry / "vmlinux"
    # Another upload of the same release is another build: not its symbols.
    assert dbg_vmlinux(tmp_path, "7.2.13+deb14-amd64", "7.2.13-2") is None


def test_dbg_for_a_kernel_that_is_not_a_debian_package_is_refused_first(tmp_path: Path) -> None:
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "lab.cli", "fetch", "--dbg", "debian:7.2",
                          "debian-src:7.2", "--cache", str(tmp_path / "cache")],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [
        "lab: error: --dbg: debian-src:7.2 is not a Debian package kernel; only "
        "debian:SERIES or debian:VERSION kernels have -dbg packages"]
    assert not (tmp_path / "cache" / "kernels").exists()  # nothing fetched before it


def test_a_call_that_timed_out_on_a_panicked_kernel_is_its_crash_not_a_hang(
        tmp_path: Path) -> None:
    """Under panic=0 QEMU and its network outlive the panic, so an agent call (or a
    program's wait) can run into its timeout on a dead kernel: the console says it died."""
    from types import SimpleNamespace

    from lab.vm.agent import AgentTimeout
    from lab.vm.session import Machine

    console = tmp_path / "console.log"
    console.write_bytes(b"".join(PANIC))
    tl = Timeline()
    machine = Machine(_kernel(), run_dir=tmp_path, cache=tmp_path, config=VmConfig(),
                      name="t", call_timeout=10, max_reboots=1)
    machine.vm = SimpleNamespace(  # type: ignore[assignment]
        timeline=tl, console_log=console, flooded=None,
        alive=lambda: tl.dead() is None, name="t", ssh=None)
    assert machine.diagnose(AgentTimeout("no reply"), console_offset=0).verdict == "HANG"
    for line in PANIC:
        tl.on_console(line)
    d = machine.diagnose(AgentTimeout("no reply"), console_offset=0)
    assert (d.verdict, d.summary) == ("CRASH", "the guest died during the test (kernel "
                                      "panic: sysrq triggered crash)")
