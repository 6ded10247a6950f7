"""Build the guest agent's cffi extension (``_labsys``) in API mode.

Run on the host as ``python3 -m guest.build_ffi --out DIR``.  The guest shares
the host's root filesystem and Python, so a module compiled here imports
there.  API mode (a real C compile) is used so struct layouts and constants
come from the installed kernel headers rather than from values typed by hand.

Every area folder (guest/areas/AREA/) brings its C: ``*.c`` and ``*.cdef``, found here,
none listed.  A ``.cdef`` names what Python may use; each of its declarations is checked
against the C it names, so the two cannot drift: a function's prototype is compiled
after the C that defines it (conflicting types fail the build), a struct of the lab's
own is declared whole and cffi compares its layout with the compiler's, and the
kernel's structs and constants (``...``) are filled in by the compiler from the uapi
headers.
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


def _statements(cdef: str) -> list[str]:
    """The cdef's top-level declarations (comments dropped, ``#define`` lines apart)."""
    text = re.sub(r"/\*.*?\*/", " ", cdef, flags=re.S)
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    out, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if ch == ";" and depth == 0:
            out.append(" ".join(text[start:i].split()))
            start = i + 1
    return [s for s in out if s]


def prototypes(cdef: str) -> list[str]:
    """The functions a cdef declares, as C prototypes (after a ``static`` definition, a
    prototype without a storage class takes its linkage: C11 6.2.2)."""
    return [s for s in _statements(cdef)
            if "(" in s and "{" not in s and not s.startswith(("typedef", "static const"))]


def make_builder(dirs: list[Path] | None = None, module: str = "_labsys") -> cffi.FFI:
    """One extension for every area: each area's .c files (in one translation unit, areas
    in name order), its .cdef files as the declarations, and those checked (above)."""
    dirs = area_dirs() if dirs is None else dirs
    cdef = "".join(p.read_text() + "\n" for d in dirs for p in sorted(d.glob("*.cdef")))
    source = "\n".join(p.read_text() for d in dirs for p in sorted(d.glob("*.c")))
    check = "\n".join(f"{proto};" for proto in prototypes(cdef))
    ffibuilder = cffi.FFI()
    ffibuilder.cdef(cdef)
    ffibuilder.set_source(
        module,
        f"{source}\n\n/* The cdef's prototypes, checked against the definitions above. */\n"
        f"{check}\n",
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
