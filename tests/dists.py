"""The project's sdist and wheel, built from the checkout, and what they must hold.

What they must hold is derived from the repository (`git ls-files`), not listed by
hand: a file added to lab/, guest/, scenarios/ or kernels/ is in the wheel, or a test
fails; a new top-level file or directory must be packaged or named in LEFT_OUT.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("lab", "guest", "scenarios")  # the wheel's import names, as in the checkout
# Data without an import name of its own goes inside lab/ (lab/paths.py reads it there).
MAPPED = {"kernels": "lab/data/kernels", "known-issues.toml": "lab/data/known-issues.toml"}
# What the wheel leaves out on purpose: the project's own tests, tooling and docs (the
# README is the wheel's long description, the LICENSE goes into its .dist-info).
LEFT_OUT = {"tests", "docs", ".github", ".ci", "noxfile.py", "pyproject.toml", ".gitignore",
            "README.md", "ARCHITECTURE.md", "LICENSE"}
EXECUTABLE = ("guest/boot.sh",)  # virtme-ng execs it in the guest, from where pip put it


def tracked() -> list[str]:
    """Every file git tracks in the checkout, as a relative path."""
    out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True,
                         check=True, text=True, timeout=60).stdout
    return sorted(p for p in out.split("\0") if p)


def expected_in_wheel(files: list[str]) -> dict[str, str]:
    """Checkout path → where the wheel must hold it, for every tracked file it carries."""
    out = {}
    for path in files:
        top = path.split("/", 1)[0]
        if top in PACKAGES:
            out[path] = path
        elif top in MAPPED:
            out[path] = MAPPED[top] + path[len(top):]
    return out


def unplaced(files: list[str]) -> list[str]:
    """Tracked files that are neither packaged nor left out on purpose."""
    placed = set(PACKAGES) | set(MAPPED) | LEFT_OUT
    return [p for p in files if p.split("/", 1)[0] not in placed]


def build(out: Path) -> tuple[Path, Path]:
    """The sdist, then the wheel built from that sdist (as pip builds one from an sdist),
    both into ``out``: (sdist, wheel).  The build backend comes from the test
    environment (pyproject's test extra), so this needs no network."""
    res = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out),
                          str(REPO)], capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return sdist, wheel


def wheel_files(wheel: Path) -> dict[str, int]:
    """Path → mode of every file in ``wheel``."""
    with zipfile.ZipFile(wheel) as z:
        return {i.filename: i.external_attr >> 16 for i in z.infolist() if not i.is_dir()}


def sdist_files(sdist: Path) -> set[str]:
    """Every file in ``sdist``, without the top directory (name-version/)."""
    with tarfile.open(sdist) as t:
        return {m.name.split("/", 1)[1] for m in t.getmembers() if m.isfile() and "/" in m.name}


def check_sdist(sdist: Path, files: list[str]) -> None:
    """The sdist holds every tracked file: the wheel, the tests and nox work from it."""
    missing = sorted(set(files) - sdist_files(sdist))
    assert not missing, f"{sdist.name} lacks {missing}"
