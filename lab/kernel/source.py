"""Kernel source trees to build from: Debian's linux-source-X, a git revision, a plain tree.

Each kind yields a ``SourceTree``: a directory holding a kernel tree and an
``identity`` string that names its content (a package version, a commit id,
a fingerprint of a plain tree's files), one part of the build cache key.

- ``debian-src:SERIES``: the newest ``linux-source-SERIES`` package, fetched
  through lab.kernel.apt's private apt, checked against the index's SHA-256 and
  unpacked once into ``<cache>/sources/debian-src/<version>/``.
- ``git:PATH[@REV]``: ``git archive`` of the commit into
  ``<cache>/sources/git/<commit>/``; the user's checkout (and its .git) is
  only read, never written.
- ``tree:PATH``: the directory itself; builds go out of tree (``O=``), so it
  stays clean.  It must be clean already: Kbuild refuses ``O=`` next to an
  in-tree .config.

Entries are published atomically (lab.atomic), so an interrupted unpack leaves
nothing that looks whole.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from lab import atomic, proc
from lab.errors import InfraError, IntegrityError, UserError
from lab.kernel import apt as aptlib
from lab.kernel import debian
from lab.kernel.catalogue import load_catalogue
from lab.kernel.deb822 import in_series, version_key

log = logging.getLogger("lab.kernel.source")

MARKER = ".kernel-lab-source"  # written last into a published source entry
_TREE_FILES = ("Makefile", "Kconfig", "arch/x86/Kconfig", "init/main.c")


@dataclass(frozen=True)
class SourceTree:
    """A kernel tree on disk and the identity of its content."""

    kind: str  # "debian-src", "git", "tree"
    path: Path
    identity: str  # "debian-src:linux-source-7.2=7.2.13-1", "git:<sha>", "tree:<path>#<hash>"
    version: str  # from the top Makefile: "7.2.13"
    note: str = ""  # set when an older cached source stands in for the newest (fetch failed)


def tree_version(path: Path) -> str:
    """VERSION.PATCHLEVEL.SUBLEVEL from a tree's Makefile; UserError when it is not a kernel."""
    missing = [f for f in _TREE_FILES if not (path / f).is_file()]
    if missing:
        raise UserError(f"{path} is not a Linux kernel tree (no {', '.join(missing)})")
    head = (path / "Makefile").read_text(errors="replace")[:2000]
    fields = dict(re.findall(r"^(VERSION|PATCHLEVEL|SUBLEVEL)\s*=\s*(\d*)\s*$", head, re.M))
    if "VERSION" not in fields or "PATCHLEVEL" not in fields:
        raise UserError(f"{path}/Makefile has no VERSION/PATCHLEVEL: not a Linux kernel tree")
    parts = [fields["VERSION"], fields["PATCHLEVEL"], fields.get("SUBLEVEL") or "0"]
    return ".".join(parts)


def _check_clean(path: Path) -> None:
    if (path / ".config").exists() or (path / "include" / "config").exists():
        raise UserError(f"{path} has an in-tree build (.config); out-of-tree builds need a "
                        f"clean tree: run `make -C {path} mrproper` first")


# --- debian-src -----------------------------------------------------------------------------


def debian_src_dir(cache: Path) -> Path:
    return cache / "sources" / "debian-src"


def _published(entry: Path) -> SourceTree | None:
    marker = entry / MARKER
    if not marker.is_file():
        return None
    kind, identity = marker.read_text().strip().split(" ", 1)
    tree = entry / "tree"
    return SourceTree(kind=kind, path=tree, identity=identity, version=tree_version(tree))


def _newest_cached(cache: Path, series: str) -> SourceTree | None:
    base = debian_src_dir(cache)
    if not base.is_dir():
        return None
    versions = [e.name for e in base.iterdir()
                if not e.name.startswith(".") and in_series(e.name, series)]
    for version in sorted(versions, key=version_key, reverse=True):
        hit = _published(base / version)
        if hit is not None:
            return hit
    return None


def debian_source(series: str, *, cache: Path) -> SourceTree:
    """linux-source-SERIES, newest version in the apt lists, unpacked once into the cache."""
    cat = load_catalogue()
    if series not in cat.series:
        raise UserError(f"unknown Debian source series {series!r}; known: "
                        f"{', '.join(cat.series)}")
    apt = aptlib.Apt(cache, cat)
    atomic.clean_stale_temps(debian_src_dir(cache))
    cached = _newest_cached(cache, series)
    if cached is not None and apt.lists_present():
        # Offline, as lab.kernel.debian does for binaries: a run should not wait on the
        # network to learn that the source it has is still the newest.
        log.info("source: %s is cached (%s)", cached.identity, cached.path)
        return cached
    try:
        apt.ensure_lists()
        package = f"linux-source-{series}"
        stanzas = [s for s in apt.show(package) if s.get("Package") == package]
        if not stanzas:
            raise UserError(f"{package} is not in the apt lists ({', '.join(cat.suites)})")
        stanza = max(stanzas, key=lambda s: version_key(s["Version"]))
        pkg = debian.Package.from_stanza(stanza)
        hit = _published(debian_src_dir(cache) / pkg.version)
        if hit is not None:
            return hit
        return _unpack_debian(apt, pkg, series=series, cache=cache)
    except InfraError as exc:
        if cached is None or isinstance(exc, IntegrityError):
            raise
        note = (f"not the newest linux-source-{series}: fetching failed ({exc}); the cached "
                f"{cached.identity} was used instead")
        log.warning("%s", note)
        return dataclasses.replace(cached, note=note)


def _unpack_debian(apt: aptlib.Apt, pkg: debian.Package, *, series: str,
                   cache: Path) -> SourceTree:
    final = debian_src_dir(cache) / pkg.version
    logs = apt.logs
    with atomic.temp_dir(debian_src_dir(cache)) as tmp:
        t0 = time.monotonic()
        aptlib.run_tool(apt.argv("apt-get", "download", f"{pkg.name}={pkg.version}"),
                        phase="source:download", log_path=logs / f"download-{pkg.name}.log",
                        env=apt.env, cwd=tmp, timeout=3600)
        debs = sorted(tmp.glob(f"{pkg.name}_*.deb"))
        if len(debs) != 1:
            raise InfraError(f"apt-get download left {len(debs)} files for {pkg.name}",
                             phase="source:download")
        with open(debs[0], "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        if not pkg.sha256 or digest != pkg.sha256:
            raise IntegrityError(f"{debs[0].name}: SHA256 {digest} does not match the index "
                             f"({pkg.sha256 or 'none'})", phase="source:verify")
        log.info("source: downloaded %s %s (%.0f MB) in %.1f s", pkg.name, pkg.version,
                 debs[0].stat().st_size / 1e6, time.monotonic() - t0)
        t0 = time.monotonic()
        root = tmp / "root"
        aptlib.run_tool(["dpkg-deb", "-x", str(debs[0]), str(root)], phase="source:extract",
                        log_path=logs / f"extract-{pkg.name}.log", timeout=900)
        debs[0].unlink()
        tarballs = sorted((root / "usr" / "src").glob("linux-source-*.tar.*"))
        if len(tarballs) != 1:
            raise InfraError(f"{pkg.name} holds {len(tarballs)} source tarballs, expected one",
                             phase="source:extract")
        aptlib.run_tool(["tar", "-xf", str(tarballs[0]), "-C", str(tmp)], phase="source:extract",
                        log_path=logs / f"extract-{pkg.name}.log", timeout=1800)
        shutil.rmtree(root)
        tops = [p for p in tmp.iterdir() if p.is_dir() and p.name.startswith("linux-source")]
        if len(tops) != 1:
            raise InfraError(f"{tarballs[0].name} unpacked to {len(tops)} directories",
                             phase="source:extract")
        tops[0].rename(tmp / "tree")
        version = tree_version(tmp / "tree")
        identity = f"debian-src:{pkg.name}={pkg.version}"
        (tmp / MARKER).write_text(f"debian-src {identity}\n")
        log.info("source: unpacked %s (Linux %s) in %.1f s", identity, version,
                 time.monotonic() - t0)
        atomic.publish(tmp, final)
    return _after_publish(final)


def _after_publish(final: Path) -> SourceTree:
    """The published entry (ours, or a concurrent fetch's that won the rename)."""
    published = _published(final)
    if published is None:
        raise InfraError(f"{final} has no {MARKER} after publishing", phase="source:publish")
    return published


# --- git ------------------------------------------------------------------------------------


def git_dir(cache: Path) -> Path:
    return cache / "sources" / "git"


def git_commit(repo: Path, rev: str | None, *, cache: Path) -> tuple[str, str]:
    """(top directory, commit id) of ``rev`` (default HEAD) in ``repo``; a UserError when
    either is not there.  Cheap: two `git rev-parse`, nothing written to the repo."""
    if not repo.is_dir():
        raise UserError(f"git:{repo}: no such directory")
    git = ["git", "-C", str(repo)]
    log_path = git_dir(cache) / "git.log"
    try:
        top = proc.run([*git, "rev-parse", "--show-toplevel"], phase="source:git",
                       log_path=log_path, timeout=60).stdout.strip()
    except proc.ProcessError:
        raise UserError(f"git:{repo}: not a git repository") from None
    want = rev or "HEAD"
    found = proc.run([*git, "rev-parse", "--verify", "--quiet", f"{want}^{{commit}}"],
                     phase="source:git", log_path=log_path, timeout=60, check=False)
    if found.returncode != 0:
        raise UserError(f"git:{repo}@{want}: no such revision in {top}")
    return top, found.stdout.strip().splitlines()[-1]


def git_source(repo: Path, rev: str | None, *, cache: Path) -> SourceTree:
    """The tree of ``repo`` at ``rev`` (default HEAD), exported once per commit."""
    top, commit = git_commit(repo, rev, cache=cache)
    want = rev or "HEAD"
    git = ["git", "-C", str(repo)]
    log_path = git_dir(cache) / "git.log"
    final = git_dir(cache) / commit
    hit = _published(final)
    if hit is not None:
        return hit
    atomic.clean_stale_temps(git_dir(cache))
    with atomic.temp_dir(git_dir(cache)) as tmp:
        t0 = time.monotonic()
        tar = tmp / "tree.tar"
        proc.run([*git, "archive", "--format=tar", f"--output={tar}", commit],
                 phase="source:git", log_path=log_path, timeout=1800)
        (tmp / "tree").mkdir()
        proc.run(["tar", "-xf", str(tar), "-C", str(tmp / "tree")], phase="source:git",
                 log_path=log_path, timeout=1800)
        tar.unlink()
        try:
            tree_version(tmp / "tree")
        except UserError:  # not a kernel at that commit: the user's to fix
            raise UserError(f"git:{repo}@{want} (commit {commit[:12]}) is not a Linux "
                            "kernel tree (no Makefile, Kconfig, arch/x86/Kconfig, init/main.c)"
                            ) from None
        (tmp / MARKER).write_text(f"git git:{commit}\n")
        log.info("source: exported %s at %s in %.1f s", top, commit[:12], time.monotonic() - t0)
        atomic.publish(tmp, final)
    return _after_publish(final)


# --- tree -----------------------------------------------------------------------------------


def tree_fingerprint(path: Path) -> str:
    """A hash of every source file's name, size and mtime: an edit changes it (~1 s)."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            st = os.stat(os.path.join(dirpath, name), follow_symlinks=False)
            h.update(f"{dirpath}/{name} {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def check_tree(path: Path) -> str:
    """The version of a plain kernel tree the lab can build out of tree; else a UserError."""
    if not path.is_dir():
        raise UserError(f"tree:{path}: no such directory")
    version = tree_version(path)
    _check_clean(path)
    return version


def plain_tree(path: Path) -> SourceTree:
    """A source directory used in place (built out of tree)."""
    path = path.expanduser().resolve()
    version = check_tree(path)
    return SourceTree(kind="tree", path=path,
                      identity=f"tree:{path}#{tree_fingerprint(path)}", version=version)
