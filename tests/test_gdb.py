"""--gdb: one option of a run that reaches QEMU's command line (a loopback gdbstub) and the
kernel's (nokaslr), and the gdb command printed for the kernel's symbols as kept."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

import pytest

from lab import cli
from lab.kernel import symbols
from lab.kernel.artifact import Kernel
from lab.options import GuestOptions, OptionError
from lab.run import config
from lab.vm import gdbstub
from lab.vm.session import kernel_args
from lab.vm.vm import virtme_argv
from lab.vm.vmconfig import VmConfig


def test_gdb_is_a_switch_every_front_spells_as_the_table_says() -> None:
    args = cli._parser().parse_args(["run", "--gdb"])
    run = config.from_args(args, "run")
    assert run.guest.gdb is True
    assert config.from_args(cli._parser().parse_args(["run"]), "run").guest.gdb is False
    # What reproducers, bisection and plain pytest are handed: the flag alone, or nothing.
    assert config.lab_args(run) == ["--gdb"] and run.guest.lab_args() == ["--gdb"]
    assert config.pytest_options(run) == ["--lab-gdb"]
    assert config.lab_args(config.make({})) == [] and GuestOptions().lab_args() == []
    # matrix.json keeps it; a hand-edited value is refused as a command line would be.
    assert GuestOptions.from_dict(run.guest.to_dict()).gdb is True
    with pytest.raises(OptionError, match="--gdb"):
        GuestOptions(gdb="yes")  # type: ignore[arg-type]
    with pytest.raises(SystemExit):  # not a bisection's: its runs are unattended
        cli._parser().parse_args(["bisect", "--gdb"])
    # `lab shell` and `lab exec` take it with the run's guest options (GUEST_COMMAND).
    parser = argparse.ArgumentParser()
    config.add_guest_command_arguments(parser)
    given = config.guest_command_given(parser.parse_args(["--gdb"]))
    assert given == {"gdb": True} and config.make(given).guest.gdb is True
    assert config.guest_command_given(parser.parse_args([])) == {}


def test_the_stub_listens_on_a_unix_socket_and_the_kernel_runs_where_its_symbols_say() -> None:
    argv = virtme_argv(Path("/k/vmlinuz"), VmConfig(gdb=True), vmdir=Path("/v"), port=2222,
                       gdb_socket=Path("/v/gdb.sock"))
    opts = argv[argv.index("--qemu-opts") + 1:]
    assert opts[opts.index("-gdb") + 1] == "unix:/v/gdb.sock,server=on,wait=off"
    assert "-gdb" not in virtme_argv(Path("/k/vmlinuz"), VmConfig(), vmdir=Path("/v"),
                                     port=2222)
    debian = Kernel(spec="debian:7.2", release="7.2.13+deb14-amd64", image=Path("/k"),
                    source="debian")
    assert "nokaslr" in kernel_args(debian, [], gdb=True)
    assert "nokaslr" not in kernel_args(debian, [])


def test_the_printed_command_names_the_vmlinux_and_scripts_or_what_would_give_them(
        tmp_path: Path) -> None:
    debian = Kernel(spec="debian:7.2", release="7.2.13+deb14-amd64", image=Path("/k"),
                    source="debian")
    lines = gdbstub.attach_lines(debian, Path("/v/gdb.sock"), cache=tmp_path)
    assert lines[0].endswith("attach with: gdb -q -ex 'target remote /v/gdb.sock'")
    assert "lab fetch --dbg debian:7.2" in lines[1] and "System.map" in lines[1]
    entry = tmp_path / "entry"
    (entry / "scripts" / "gdb").mkdir(parents=True)
    (entry / "vmlinux").write_bytes(b"\x7fELF")
    built = Kernel(spec="tree:/t", release="7.2.13", image=entry / "bzImage", source="tree",
                   vmlinux=entry / "vmlinux")
    assert gdbstub.attach_argv(built, Path('/s'), cache=tmp_path)[-1] == str(entry / "vmlinux")
    assert "no lx-* commands" in gdbstub.attach_lines(built, Path('/s'), cache=tmp_path)[1]
    (entry / "vmlinux-gdb.py").write_text("# loader\n")
    argv = gdbstub.attach_argv(built, Path('/s'), cache=tmp_path)
    assert argv[argv.index("-iex") + 1] == f"add-auto-load-safe-path {entry}"
    assert len(gdbstub.attach_lines(built, Path('/s'), cache=tmp_path)) == 1


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_line_tables_are_found_in_a_real_elf(tmp_path: Path) -> None:
    src = tmp_path / "f.c"
    src.write_text("int f(int x) { return x + 1; }\n")
    for flags, dwarf in ((["-g"], True), ([], False)):
        obj = tmp_path / f"f{len(flags)}.o"
        subprocess.run(["gcc", "-c", "-O1", *flags, "-o", str(obj), str(src)], check=True)
        assert symbols.has_dwarf(obj) is dwarf
    assert symbols.has_dwarf(src) is False  # not an ELF
