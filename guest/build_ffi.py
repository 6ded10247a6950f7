"""Build the guest agent's cffi extension (``_labsys``) in API mode.

Run on the host as ``python3 -m guest.build_ffi --out DIR``.  The guest shares
the host's root filesystem and Python, so a module compiled here imports
there.  API mode (a real C compile) is used so struct layouts and constants
come from the installed kernel headers rather than from values typed by hand.

Every area folder (guest/areas/AREA/) brings its C, found here, none listed.  What
Python may use is declared once: the lab's own structs and the functions Python calls
sit in the C itself, between ``/* cdef: begin */`` and ``/* cdef: end */`` (read from
there into the cdef, and compiled there, so the compiler checks them against the
definitions); the kernel's names are in the area's ``*.cdef``, as cffi's ``...``
(constants, and structs with a trailing ``...;``), which the compiler fills in from
the uapi headers.  A constant newer than the build host's headers is spelled out in the
C under ``#ifndef``, with the kernel version that added it.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import sys
import tempfile
from pathlib import Path

import cffi

AREAS_DIR = Path(__file__).resolve().parent / "areas"


def area_dirs(root: Path = AREAS_DIR) -> list[Path]:
    """The area folders that hold C."""
    return sorted(d for d in root.iterdir() if d.is_dir() and any(d.glob("*.c")))


BEGIN, END = "/* cdef: begin */", "/* cdef: end */"
SECTION = re.compile(re.escape(BEGIN) + r"(.*?)" + re.escape(END), re.S)


def sections(path: Path) -> str:
    """The marked declarations of a C file."""
    return "".join(m.group(1) for m in SECTION.finditer(path.read_text()))


def cdef_of(d: Path) -> str:
    """An area's declarations: its .cdef files (the kernel's names), then the marked
    sections of its .h and .c files, in name order."""
    parts = [p.read_text() for p in sorted(d.glob("*.cdef"))]
    parts += [sections(p) for p in sorted([*d.glob("*.h"), *d.glob("*.c")])]
    return "\n".join(parts) + "\n"


def make_builder(dirs: list[Path] | None = None, module: str = "_labsys") -> cffi.FFI:
    """One extension for every area: each area's .c files (one translation unit, areas in
    name order) and their declarations (``cdef_of``)."""
    dirs = area_dirs() if dirs is None else dirs
    source = "\n".join(p.read_text() for d in dirs for p in sorted(d.glob("*.c")))
    ffibuilder = cffi.FFI()
    ffibuilder.cdef("".join(cdef_of(d) for d in dirs))
    ffibuilder.set_source(
        module,
        source,
        include_dirs=[str(d) for d in dirs],
        extra_compile_args=["-pthread", "-Werror=incompatible-pointer-types"],
        libraries=["pthread"])
    return ffibuilder


def build(out: Path, dirs: list[Path] | None = None, module: str = "_labsys") -> Path:
    """Compile in a scratch dir and copy only the .so into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    ffibuilder = make_builder(dirs, module)
    with tempfile.TemporaryDirectory(prefix="labsys-build-") as tmp:
        built = Path(ffibuilder.compile(tmpdir=tmp, verbose=False))
        _check_layouts(built, module)
        dest = out / built.name
        shutil.copy2(built, dest)
    return dest


def _check_layouts(built: Path, module: str) -> None:
    """Load the extension and lay out every struct its cdef names: cffi compares a
    struct of the lab's own (declared whole) with the compiler's offsets and sizes here
    (a VerificationError), not at some op's first use in the guest."""
    spec = importlib.util.spec_from_file_location(module, built)
    assert spec is not None and spec.loader is not None
    ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ext)
    for name in ext.ffi.list_types()[1]:
        try:
            ext.ffi.sizeof(f"struct {name}")
        except ext.ffi.error as exc:
            raise cffi.VerificationError(f"struct {name}: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--out", required=True, type=Path, help="directory for _labsys*.so"
    )
    args = parser.parse_args(argv)
    print(build(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
