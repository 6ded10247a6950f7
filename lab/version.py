"""What `lab --version` says: the package's version, and the commit when run from a git checkout."""

from __future__ import annotations

from importlib import metadata

from lab import proc
from lab.paths import CHECKOUT, REPO

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
