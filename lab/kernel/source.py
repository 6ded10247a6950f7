"""Kernel source trees to build from: Debian's linux-source-X, a git revision, a plain tree.

Each kind yields a ``SourceTree``: a directory holding a kernel tree and an
``identity`` string that names its content (a package version, a commit id,
a fingerprint of a plain tree's files), one part of the build cache key.

- ``debian-src:SERIES``: the newest ``linux-source-SERIES`` package, fetched
  through lab.kernel.apt's private apt, checked against the index's SHA-256 and
  unpacked once into ``<cache>/sources/debian-src/<version>/``;
  ``debian-src:VERSION`` is that version only (the cached entry, else the lists').
- ``git:PATH[@REV]``: the commit checked out in the lab's clone of the
  repository (lab.kernel.worktree), one work tree per repository; the user's
  checkout (and its .git) is only read, never written.  Without ``@REV`` it is
  HEAD, and a working tree with uncommitted changes is refused: they would be
  left out without a word.
- ``worktree:PATH``: the working tree as it is, in that same clone: HEAD
  checked out, the changed and untracked files copied over it.  Its identity
  is ``worktree:<commit>+<digest of the changes>``; with no change it is the
  commit's own (``git:<commit>``), the same build as ``git:PATH@<commit>``.
- ``tree:PATH``: the directory's source files, copied into a lab-owned mirror
  (lab.kernel.mirror) and built out of tree (``O=``) from there, so a tree the
  developer also configures and builds in place (.config, objects) is never
  written and never in the way.

Entries are published atomically (lab.atomic), so an interrupted unpack leaves
nothing that looks whole.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lab import atomic
from lab.errors import InfraError, IntegrityError, UserError
from lab.kernel import apt as aptlib
from lab.kernel import debian, mirror, worktree
from lab.kernel.catalogue import load_catalogue
from lab.kernel.deb822 import compare_versions, in_series, version_key

log = logging.getLogger("lab.kernel.source")

MARKER = ".kernel-lab-source"  # written last into a published source entry
_TREE_FILES = ("Makefile", "Kconfig", "arch/x86/Kconfig", "init/main.c")


@dataclass(frozen=True)
class SourceTree:
    """A kernel tree on disk and the identity of its content."""

    kind: str  # "debian-src", "git", "worktree", "tree"
    path: Path
    # "debian-src:linux-source-7.2=7.2.13-1", "git:<sha>", "worktree:<sha>+<digest>",
    # "tree:<path>#<hash>"
    identity: str
    version: str  # from the top Makefile: "7.2.13"
    note: str = ""  # set when an older cached source stands in for the newest (fetch failed)
    # Names the object tree (lab.kernel.build) when the identity should not: every
    # commit checked out in one clone shares one, so a step rebuilds what changed.
    slot: str | None = None


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


def _cached_versions(cache: Path, series: str) -> list[str]:
    """The versions of a series' source entries in the cache, newest first (whole or not)."""
    base = debian_src_dir(cache)
    if not base.is_dir():
        return []
    versions = [e.name for e in base.iterdir()
                if not e.name.startswith(".") and in_series(e.name, series)]
    return sorted(versions, key=version_key, reverse=True)


def _newest_cached(cache: Path, series: str) -> tuple[str, SourceTree] | None:
    for version in _cached_versions(cache, series):
        hit = _published(debian_src_dir(cache) / version)
        if hit is not None:
            return version, hit
    return None


def _listed(apt: aptlib.Apt, package: str) -> list[dict[str, str]]:
    """The package's stanzas in the apt lists, newest first."""
    stanzas = [s for s in apt.show(package) if s.get("Package") == package and "Version" in s]
    return sorted(stanzas, key=lambda s: version_key(s["Version"]), reverse=True)


def debian_source(series: str, *, cache: Path, exact: str | None = None) -> SourceTree:
    """linux-source-SERIES unpacked once into the cache: the newest version in the apt
    lists, or ``exact``, that version and no other (a pinned reproducer's)."""
    cat = load_catalogue()
    if series not in cat.series:
        raise UserError(f"unknown Debian source series {series!r}; known: "
                        f"{', '.join(cat.series)}")
    apt = aptlib.Apt(cache, cat)
    atomic.clean_stale_temps(debian_src_dir(cache))
    package = f"linux-source-{series}"
    if exact is not None:
        return _exact_source(apt, package, series, exact, cache=cache)
    newest_cached = _newest_cached(cache, series)
    try:
        # With a cached entry and lists, offline, as lab.kernel.debian does for binaries:
        # a run should not wait on the network to learn that the source it has is still
        # the newest; the local lists still say which is (an exact one may be older).
        if not (newest_cached is not None and apt.lists_present()):
            apt.ensure_lists()
        stanzas = _listed(apt, package)
        if not stanzas:
            raise UserError(f"{package} is not in the apt lists ({', '.join(cat.suites)})")
        pkg = debian.Package.from_stanza(stanzas[0])
        if newest_cached is not None and compare_versions(newest_cached[0], pkg.version) >= 0:
            log.info("source: %s is cached (%s)", newest_cached[1].identity,
                     newest_cached[1].path)
            return newest_cached[1]
        return _unpack_debian(apt, pkg, series=series, cache=cache)
    except InfraError as exc:
        if newest_cached is None or isinstance(exc, IntegrityError):
            raise
        cached = newest_cached[1]
        note = (f"not the newest linux-source-{series}: fetching failed ({exc}); the cached "
                f"{cached.identity} was used instead")
        log.warning("%s", note)
        return dataclasses.replace(cached, note=note)


def _exact_source(apt: aptlib.Apt, package: str, series: str, exact: str, *,
                  cache: Path) -> SourceTree:
    """``package`` at version ``exact``: the cached entry, else the lists' (refreshed once
    when they lack it), else a UserError naming the versions the lists have."""
    for version in _cached_versions(cache, series):
        hit = _published(debian_src_dir(cache) / version)
        if hit is not None and compare_versions(version, exact) == 0:
            return hit  # no lists read, no network
    updated = apt.ensure_lists()
    stanzas = _listed(apt, package)
    found = [s for s in stanzas if compare_versions(s["Version"], exact) == 0]
    if not found and not updated:
        apt.ensure_lists(refresh=True)  # the version may be newer than our lists
        stanzas = _listed(apt, package)
        found = [s for s in stanzas if compare_versions(s["Version"], exact) == 0]
    if not found:
        listed = ", ".join(s["Version"] for s in stanzas) or "none"
        raise UserError(f"debian-src:{exact}: {package} {exact} is neither cached nor in the "
                        f"apt lists ({', '.join(apt.catalogue.suites)}), which have: {listed}")
    return _unpack_debian(apt, debian.Package.from_stanza(found[0]), series=series,
                          cache=cache)


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


@dataclass(frozen=True)
class GitCommit:
    """A commit of a user's repository and the lab's clone that checks it out, with the
    working tree's changes over it for ``worktree:`` (``working_tree``)."""

    commit: str
    clone: worktree.Clone
    changes: worktree.WorkingChanges | None = None

    @property
    def overlay(self) -> worktree.WorkingChanges | None:
        """The changes to copy over the commit; None for a commit alone or a clean tree."""
        return self.changes if self.changes is not None and self.changes.changes else None

    @property
    def identity(self) -> str:
        if self.overlay is None:
            return f"git:{self.commit}"  # a clean working tree is its commit: one build
        return f"worktree:{self.commit}+{self.overlay.digest}"


def _resolve_commit(repo: Path, rev: str, *, cache: Path) -> tuple[Path, GitCommit]:
    """The work tree's top and ``rev``'s commit in its repository, checking nothing out.

    The user's repository decides what a name means; a full commit id it does
    not have may be one the lab made in its clone (a revert check's commit).
    """
    log_path = worktree.clones_dir(cache) / "git.log"
    top = worktree.repo_top(repo, log_path=log_path)
    commit = worktree.rev_commit(top, rev, log_path=log_path)
    clone = worktree.clone_for(worktree.repo_main(top, log_path=log_path), cache=cache)
    if commit is None and re.fullmatch(r"[0-9a-f]{40}", rev):
        commit = clone.commit(rev)
    if commit is None:
        raise UserError(f"git:{repo}@{rev}: no such revision in {top}")
    return top, GitCommit(commit=commit, clone=clone)


def git_commit(repo: Path, rev: str | None, *, cache: Path) -> GitCommit:
    """Resolve ``rev`` of ``repo`` to a commit, checking nothing out.

    Without ``rev`` it is HEAD, which must then be what the working tree holds:
    uncommitted changes are refused (UserError) rather than left out.  A named
    revision (``@HEAD`` too) is built whatever the working tree holds.
    """
    if rev is None:
        _refuse_uncommitted(repo, cache=cache)
    return _resolve_commit(repo, rev or "HEAD", cache=cache)[1]


def _refuse_uncommitted(repo: Path, *, cache: Path) -> None:
    log_path = worktree.clones_dir(cache) / "git.log"
    top = worktree.repo_top(repo, log_path=log_path)
    head = worktree.rev_commit(top, "HEAD", log_path=log_path)
    if head is None:
        return  # no commit yet: _resolve_commit says so
    changes = worktree.working_changes(top, head, log_path=log_path)
    if changes.changes:
        n = len(changes.changes)
        raise UserError(
            f"git:{repo} builds HEAD ({head[:12]}), but {n} file(s) in the working tree "
            f"differ from it ({changes.modified} changed, {changes.untracked} untracked: "
            f"{changes.changes[0].path}{', ...' if n > 1 else ''}); use worktree:{repo} to "
            f"test them, or git:{repo}@HEAD to build the commit alone")


def working_tree(repo: Path, *, cache: Path) -> GitCommit:
    """HEAD of the work tree at ``repo`` and its uncommitted changes, read, not checked out."""
    top, found = _resolve_commit(repo, "HEAD", cache=cache)
    changes = worktree.working_changes(top, found.commit, log_path=found.clone.log_path)
    return dataclasses.replace(found, changes=changes)


@contextlib.contextmanager
def git_checkout(found: GitCommit) -> Iterator[SourceTree]:
    """The clone's work tree at the commit (and a working tree's changes copied over it),
    locked until the block ends (build inside it).

    Every commit of one repository, with changes or not, shares the slot
    ``git-<clone>``, hence one object tree per variant: a step to a nearby commit,
    or a rebuild after a one-file edit, compiles what changed and links.
    """
    overlay = found.overlay
    with found.clone.checked_out(found.commit, overlay=overlay) as tree:
        try:
            version = tree_version(tree)
        except UserError:  # not a kernel at that commit: the user's to fix
            spec = (f"worktree:{overlay.top}" if overlay is not None
                    else f"git:{found.clone.repo}@{found.commit[:12]}")
            raise UserError(f"{spec} is not a Linux kernel tree (no "
                            f"{', '.join(_TREE_FILES)})") from None
        yield SourceTree(kind="git" if overlay is None else "worktree", path=tree,
                         identity=found.identity, version=version,
                         slot=f"git-{found.clone.key}")


# --- tree -----------------------------------------------------------------------------------


def check_tree(path: Path) -> str:
    """The version of a plain kernel tree; UserError when it is not one (reads no listing)."""
    if not path.is_dir():
        raise UserError(f"tree:{path}: no such directory")
    return tree_version(path)


@contextlib.contextmanager
def plain_tree(path: Path, *, cache: Path) -> Iterator[SourceTree]:
    """The tree's source files in the lab's copy of it, synced and locked until the block
    ends (build inside); the tree itself, configured and built in place or not, is only read.

    Every edit of one tree shares its object tree (lab.kernel.build keys it by path).
    """
    path = path.expanduser().resolve()
    check_tree(path)
    with mirror.Mirror(path, cache=cache).synced() as synced:
        missing = [f for f in _TREE_FILES if not (synced.tree / f).is_file()]
        if missing:
            raise UserError(f"tree:{path}: its .gitignore rules ignore {', '.join(missing)}; "
                            "the lab builds the files they do not ignore")
        yield SourceTree(kind="tree", path=synced.tree,
                         identity=f"tree:{path}#{synced.fingerprint}",
                         version=tree_version(synced.tree))
