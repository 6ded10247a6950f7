"""Where the lab keeps its cache and run directories."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "KERNEL_LAB_CACHE"

# The checkout (or installed tree) the lab runs from: kernels/, guest/ and scenarios/
# sit beside lab/.
REPO = Path(__file__).resolve().parent.parent
KERNELS_DIR = REPO / "kernels"
GUEST_DIR = REPO / "guest"
SCENARIOS_DIR = REPO / "scenarios"


def cache_root(override: str | Path | None = None) -> Path:
    """The cache root: the option, else $KERNEL_LAB_CACHE, else $XDG_CACHE_HOME/kernel-lab."""
    if override:
        return Path(override).expanduser().resolve()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return (Path(xdg) / "kernel-lab").resolve()


def default_results_root() -> Path:
    return Path("results").resolve()
