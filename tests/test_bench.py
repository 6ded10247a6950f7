"""The benchmark's own checks (the measurements themselves run under `nox -s bench`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.bench.boot import check_can_power_off
from lab.errors import UserError
from lab.kernel.artifact import Kernel


def test_bench_refuses_a_boot_baseline_that_cannot_power_off(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("CONFIG_SMP=y\n# CONFIG_ACPI is not set\n")
    base = Kernel(spec="debian-src:7.2", release="7.2.13", image=tmp_path / "bzImage",
                  config=config)
    with pytest.raises(UserError, match="no CONFIG_ACPI"):
        check_can_power_off(base)
    config.write_text("CONFIG_SMP=y\nCONFIG_ACPI=y\n")
    check_can_power_off(base)


def _stub_tree(path: Path) -> Path:
    from lab.bench import history

    for f, text in (("Makefile", "VERSION = 7\nPATCHLEVEL = 2\nSUBLEVEL = 13\n"),
                    ("Kconfig", "config AIO\n\tbool\n"), ("arch/x86/Kconfig", "\n"),
                    ("init/main.c", "int main;\n"), (".gitignore", "/*\n"),
                    (history.AIO, "#include <linux/kernel.h>\nint x;\n"
                     "SYSCALL_DEFINE1(io_destroy, aio_context_t, ctx)\n{\n"
                     + history.ENOENT[0] + "(void)\n{\n}\n")):
        (path / f).parent.mkdir(parents=True, exist_ok=True)
        (path / f).write_text(text)
    return path


def test_the_synthetic_history_is_the_same_every_time(tmp_path: Path) -> None:
    import subprocess

    from lab.bench import history
    from lab.kernel.source import SourceTree

    tree = SourceTree(kind="debian-src", path=_stub_tree(tmp_path / "tree"),
                      identity="debian-src:stub", version="7.2.13")
    changes = history.aio_regression_changes()
    one = history.make(tmp_path / "a", tree, "h", changes)
    two = history.make(tmp_path / "b", tree, "h", changes)
    assert one.commits == two.commits and len(one.commits) == 16  # fixed names and dates
    assert history.make(tmp_path / "a", tree, "h", changes) == one  # found, not made again

    def show(i: int) -> str:
        return subprocess.run(["git", "-C", str(one.repo), "show", f"{one.commits[i]}:fs/aio.c"],
                              capture_output=True, text=True, check=True).stdout

    assert '#error "kernel-lab' in show(7) and "#error" not in show(8)
    assert "return -ENOENT;" in show(10) and "return -ENOENT;" not in show(9)
    assert show(8) == show(0) and show(15) == show(10)
    # .gitignore ignores everything at the top, as Debian's does: the tree is there anyway.
    ls = subprocess.run(["git", "-C", str(one.repo), "ls-tree", "-r", "--name-only",
                         one.commits[0]], capture_output=True, text=True, check=True).stdout
    assert "init/main.c" in ls.split()


def test_busy_cores_count_what_a_busy_loop_keeps_busy() -> None:
    """The matrix bench's CPU figure: /proc/stat's fields, then a process that spins."""
    import os
    import subprocess
    import sys

    from lab.bench.workers import busy_cores, cpu_jiffies

    # user nice system idle iowait irq softirq steal guest guest_nice: the guest
    # times are inside user and nice already, so they are not counted twice.
    assert cpu_jiffies("cpu  100 2 30 500 7 1 1 4 50 1\ncpu0 1 2 3\n") == (138, 645)
    before = cpu_jiffies()
    subprocess.run([sys.executable, "-c",
                    "import time\nt = time.monotonic()\nwhile time.monotonic() - t < 1: pass"],
                   check=True)
    busy = busy_cores(before, cpu_jiffies())
    assert 0.8 <= busy <= (os.cpu_count() or 1), busy
    assert busy_cores(before, before) == 0.0
