"""What `lab --version` says: the package's version, and the commit when run from a git checkout."""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path

from lab import proc
from lab.paths import CHECKOUT, GUEST_DIR, REPO, SCENARIOS_DIR

DISTRIBUTION = "kernel-lab"


def describe() -> str:
    """``kernel-lab 0.1.0 (git 1a2b3c4d-dirty, /path/to/checkout)``, or with the install
    directory for a wheel."""
    try:
        version = metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # a checkout run without installing it
        version = "unknown (not installed)"
    where = str(REPO)
    if CHECKOUT is not None and (CHECKOUT / ".git").exists():
        # One git call of a few ms, made only when asked for the version.  No commit when
        # git is absent or refuses (another user's checkout: "dubious ownership").
        try:
            described = proc.run(["git", "-C", str(CHECKOUT), "describe", "--always",
                                  "--dirty", "--abbrev=12"], phase="version", timeout=30,
                                 check=False)
        except proc.ProcessError:
            described = None
        commit = described.stdout.strip() if described is not None else ""
        if described is not None and described.returncode == 0 and commit:
            where = f"git {commit}, {where}"
    return f"{DISTRIBUTION} {version} ({where})"


def code_digest(*extra: Path) -> str:
    """The lab's own code as it is now: a digest of every file of lab/, guest/ and
    scenarios/ (and of ``extra`` directories: a suite of the user's), names and content.

    What a commit id cannot say: a checkout with uncommitted edits, a wheel, a copy.
    A bisection reuses an earlier run only under the same digest.
    """
    h = hashlib.sha256()
    for top in dict.fromkeys([REPO / "lab", GUEST_DIR, SCENARIOS_DIR, *extra]):
        files = sorted(p for p in top.rglob("*") if p.is_file() and "__pycache__" not in
                       p.parts and p.suffix not in (".pyc", ".so")) if top.is_dir() else []
        for path in files:
            h.update(f"{top.name}/{path.relative_to(top)}\0".encode())
            h.update(path.read_bytes())
            h.update(b"\0")
    return h.hexdigest()[:16]
