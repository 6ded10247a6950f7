"""Where the lab's own files are (a checkout or an installed wheel), its cache and run directories.

The one module that knows the two layouts.  In a checkout (an editable install
too) lab/, guest/, scenarios/, kernels/ and known-issues.toml sit side by side at
its top.  A wheel installs the three import packages side by side in
site-packages, and the data that has no import name of its own (kernels/, the
known-issues template) inside lab/ as lab/data/ (pyproject.toml: force-include).
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "KERNEL_LAB_CACHE"

_PACKAGE = Path(__file__).resolve().parent
# The directory that holds lab/, guest/ and scenarios/: the checkout's top, or
# site-packages.  The lab's own child processes (`python -m guest...`, the reaper)
# start there, so they import this copy of the lab even from a checkout that is not
# installed; nothing is written there.
REPO = _PACKAGE.parent
_PACKAGED_DATA = _PACKAGE / "data"  # only in a wheel: a checkout has no lab/data/
INSTALLED = _PACKAGED_DATA.is_dir()
DATA_DIR = _PACKAGED_DATA if INSTALLED else REPO
KERNELS_DIR = DATA_DIR / "kernels"
GUEST_DIR = REPO / "guest"
SCENARIOS_DIR = REPO / "scenarios"
# The lab's own known issues: the project's list in a checkout, in a wheel its copy
# (which holds no entry, only how to write one: a user keeps a list of their own).
KNOWN_ISSUES = DATA_DIR / "known-issues.toml"
# The git checkout the lab runs from, if it runs from one (`lab --version` names its commit).
CHECKOUT = None if INSTALLED else REPO


def cache_root(override: str | Path | None = None) -> Path:
    """The cache root: the option, else $KERNEL_LAB_CACHE, else $XDG_CACHE_HOME/kernel-lab.

    A UserError when it (or the nearest of its parents that exists) is not a directory:
    every command would fail on it later, in the middle of what it does."""
    if override:
        return _a_directory(Path(override).expanduser().resolve(), f"--cache {override}")
    env = os.environ.get(CACHE_ENV)
    if env:
        return _a_directory(Path(env).expanduser().resolve(), f"{CACHE_ENV}={env}")
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return _a_directory((Path(xdg) / "kernel-lab").resolve(), f"the cache {xdg}/kernel-lab")


def _a_directory(path: Path, what: str) -> Path:
    from lab.errors import UserError

    for p in (path, *path.parents):
        if p.is_dir():
            return path
        if p.exists() or p.is_symlink():
            why = "is not a directory" if p == path else f"cannot be one: {p} is a file"
            raise UserError(f"{what}: {path} {why}; give a directory for the cache: "
                            f"--cache DIR or {CACHE_ENV}=DIR")
    return path


def default_results_root() -> Path:
    return Path("results").resolve()


def in_scenarios(path: Path) -> bool:
    """Whether ``path`` is the lab's own scenarios/ or inside it."""
    path = path.resolve()
    return path == SCENARIOS_DIR or SCENARIOS_DIR in path.parents


def rootdir_args(*paths: Path, suite: Path | None = None) -> list[str]:
    """pytest's ``--rootdir`` for a run that collects ``paths``: when every one is in the
    lab's own scenarios, the directory that holds scenarios/, so their test ids read
    ``scenarios/...`` whatever the current directory and wherever the lab is installed
    (with no ini file beside an installed suite, pytest would root the ids at scenarios/
    itself).  None when any path is elsewhere (a suite of the user's, a node id in it):
    rooted above scenarios/, pytest would name a test outside it ``::test_a``."""
    if paths and all(in_scenarios(p) for p in paths):
        return [f"--rootdir={REPO}"]
    return suite_rootdir_args(*paths, suite=suite)


# What makes pytest take a directory as a project's root (its own rootdir rules).
_PYTEST_CONFIGS = (("pytest.ini", ""), (".pytest.ini", ""), ("pyproject.toml", "[tool.pytest"),
                   ("tox.ini", "[pytest]"), ("setup.cfg", "[tool:pytest]"), ("setup.py", ""))


def suite_rootdir_args(*paths: Path, suite: Path | None = None) -> list[str]:
    """A suite of the user's: rooted where its pytest configuration is (pytest finds it:
    nothing to add), else at the suite's directory (``suite``, when what is collected is
    in it: node ids chosen in a suite keep the suite's ids), else at the directory that
    holds what is collected.  Left to
    itself, pytest roots such a suite at the common ancestor of the suite and the
    current directory: a suite in /tmp/x run from /tmp/y had ids "x/test_a.py::..."
    there and "test_a.py::..." from /home, so a rerun from elsewhere named other tests."""
    if not paths:
        return []
    dirs = [q if q.is_dir() else q.parent for q in (p.resolve() for p in paths)]
    base = Path(os.path.commonpath(dirs))
    top = None if suite is None else suite.resolve()
    if top is not None and not top.is_dir():
        top = top.parent
    if top is not None and (base == top or top in base.parents):
        base = top
    if base == Path(base.anchor):
        return []  # nothing in common but /: pytest's own choice
    for d in (base, *base.parents):
        for name, marker in _PYTEST_CONFIGS:
            f = d / name
            try:
                if f.is_file() and (not marker or marker in f.read_text(errors="replace")):
                    return []
            except OSError:
                continue
    return [f"--rootdir={base}"]
