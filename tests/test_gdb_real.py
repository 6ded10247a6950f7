"""gdb attaches to a real guest started with `lab run --gdb` and reads kernel memory.

Debian's package has no vmlinux (its -dbg package has), so the symbol's address comes
from the guest's /proc/kallsyms; with ``nokaslr`` it is the link-time address, the one a
vmlinux or System.map would give.  gdb runs as the lab printed it, in batch mode, from
inside a test of the run (while the guest is up and its agent idle)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from labrun import lab_run

pytestmark = [pytest.mark.vm, pytest.mark.network,
              pytest.mark.skipif(shutil.which("gdb") is None, reason="needs gdb (apt gdb)")]

SUITE = r"""
import subprocess
from typing import Any

from lab.vm import gdbstub


def test_gdb_reads_the_banner(vm: Any, record: Any) -> None:
    cmdline = vm.ssh.run(["cat", "/proc/cmdline"], timeout=30).stdout
    syms = vm.ssh.run(["sh", "-c", "grep -E ' (_text|linux_banner)$' /proc/kallsyms"],
                      timeout=60).stdout
    addr = {line.split()[2]: line.split()[0] for line in syms.splitlines()}
    record("cmdline", cmdline.strip())
    record("kallsyms", addr)
    # The command the lab printed, in batch mode, without the user's gdbinit.
    argv = gdbstub.attach_argv(vm.kernel, vm.gdb_socket, cache=vm.cache)
    argv[1:1] = ["-batch", "-nx"]
    argv += ["-ex", f"x/s 0x{addr['linux_banner']}", "-ex", "detach"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    record("gdb", {"argv": argv, "status": done.returncode, "out": done.stdout[-2000:],
                   "err": done.stderr[-2000:]})
    # The guest runs on once gdb detached.
    assert vm.ssh.run(["true"], timeout=60).status == 0
"""


def test_gdb_attaches_to_a_guest_run_with_gdb_and_reads_a_kernel_symbol(
        tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_gdb.py").write_text(SUITE)
    run = lab_run(tmp_path, "--gdb", "--suite", str(suite))
    (rec,) = run.records()
    assert rec["verdict"] == "PASS", run.out[-3000:]
    data = rec["data"]
    # The printed command: the stub's unix socket (no TCP port), and what would give symbols.
    printed = re.search(r"attach with: (gdb -q .*-ex 'target remote (/\S+/gdb\.sock)'"
                        r"(.*))$", run.out, re.M)
    assert printed, run.out[-3000:]
    assert f"target remote {printed.group(2)}" in data["gdb"]["argv"]
    if not printed.group(3).strip():  # no vmlinux (no -dbg fetched): what would give one
        assert "lab fetch --dbg debian:7.2" in run.out, run.out[-3000:]
    # nokaslr: the kernel's text is where it was linked.
    assert "nokaslr" in data["cmdline"].split()
    assert data["kallsyms"]["_text"] == "ffffffff81000000", data["kallsyms"]
    gdb = data["gdb"]
    assert gdb["status"] == 0, gdb
    assert re.search(r':\s+"Linux version 7\.2\.13', gdb["out"]), gdb
