"""Splat traces decoded to file:line with the kernel tree's own decode_stacktrace.sh, on a
small real ELF built here with and without DWARF (a kernel built with the debuginfo
fragment takes a cold build: see README's gdb section for one checked by hand)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from lab.kernel import decode
from lab.kernel.artifact import Kernel
from lab.paths import cache_root

SCRIPT = next(iter(sorted(cache_root().glob(
    "sources/debian-src/*/tree/scripts/decode_stacktrace.sh"))), None)

pytestmark = [
    pytest.mark.skipif(SCRIPT is None, reason="needs a Debian kernel source tree in the lab's "
                       "cache (lab fetch debian-src:7.2; tests/test_build_real.py fetches it)"),
    pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("addr2line") is None,
                       reason="needs gcc and binutils"),
]

MAIN = "int kernel_init(void *unused)\n{\n\treturn 0;\n}\n"
AIO = """int helper(int x);

int io_destroy(int x)
{
\tint y = x * 3;

\treturn helper(y) + 1;
}

int helper(int x)
{
\treturn x + 2;
}
"""
EXCERPT = """[   12.345678] Call Trace:
[   12.345679]  <TASK>
[   12.345680]  io_destroy+0x1c/0x30
[   12.345681]  helper+0x4/0x10
[   12.345682]  </TASK>"""


def _entry(tmp_path: Path, *, dwarf: bool) -> Kernel:
    """A cache entry as a build publishes it: vmlinux, and the tree's scripts beside it."""
    src = tmp_path / "src"
    (src / "init").mkdir(parents=True)
    (src / "fs").mkdir()
    (src / "init" / "main.c").write_text(MAIN)
    (src / "fs" / "aio.c").write_text(AIO)
    g = ["-g"] if dwarf else []
    for name in ("init/main.c", "fs/aio.c"):
        subprocess.run(["gcc", *g, "-O0", "-c", "-o", Path(name).stem + ".o", name],
                       cwd=src, check=True)
    entry = tmp_path / "entry"
    (entry / "scripts").mkdir(parents=True)
    subprocess.run(["ld", "-e", "kernel_init", "-o", str(entry / "vmlinux"), "main.o",
                    "aio.o"], cwd=src, check=True)
    assert SCRIPT is not None
    shutil.copy2(SCRIPT, entry / "scripts" / "decode_stacktrace.sh")
    return Kernel(spec="tree:x", release="7.2.13", image=entry / "bzImage", source="tree",
                  vmlinux=entry / "vmlinux")


def test_a_kernel_with_line_tables_gets_each_frame_s_file_and_line(tmp_path: Path) -> None:
    kernel = _entry(tmp_path, dwarf=True)
    splats = [{"title": "BUG: x", "excerpt": EXCERPT}, {"title": "empty", "excerpt": ""}]
    first, second = decode.decode_splats(kernel, splats)
    text = first[decode.DECODED]
    assert "io_destroy (fs/aio.c:7)" in text and "helper (fs/aio.c:11)" in text, text
    assert "[   12.345679]  <TASK>" in text  # the other lines as they were
    assert first["excerpt"] == EXCERPT and decode.DECODED not in second
    # Decoded once: a splat carried on (an aftermath entry) is left as it is.
    assert decode.decode_splats(kernel, [first]) == [first]


def test_a_kernel_without_dwarf_or_without_vmlinux_is_left_as_it_is(tmp_path: Path) -> None:
    kernel = _entry(tmp_path, dwarf=False)
    splats = [{"title": "BUG: x", "excerpt": EXCERPT}]
    assert decode.decoder(kernel) is None
    assert decode.decode_splats(kernel, splats) == splats
    bare = Kernel(spec="debian:7.2", release="7.2.13+deb14-amd64", image=Path("/k"),
                  source="debian")
    assert decode.decode_splats(bare, splats) == splats
