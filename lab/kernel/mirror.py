"""A lab-owned copy of a plain kernel tree's source files: ``tree:PATH`` is built from it.

A developer's tree is often also built in place: a .config, include/config,
arch/x86/include/generated and objects beside the sources.  Kbuild refuses an
out-of-tree build (``O=``) of such a tree ("The source tree is not clean, please
run 'make mrproper'", a check in the top Makefile), and make's VPATH would take
its stale objects for the build's own.  So the lab builds a copy of the tree's
source files, never the tree: the files its .gitignore rules do not ignore
(listed by git against an empty repository of the lab's, so the tree's own
repository, if it has one, is not read), synced into
``<cache>/sources/tree/<name>-<hash>/tree`` before each build.

A file is written only when it changed (its size or mtime differ from the last
sync, and then its content), and it gets the time of the copy, so make rebuilds
what changed, and an edit saved during a build is seen by the next one.  Files
gone from the tree go from the copy.  The user's tree is only read.

The copy's fingerprint (``tree:<path>#<fingerprint>``, the build's identity and a
reproducer's pin) is a SHA-256 of every file's name, kind and content: an edit
undone, or a copy made afresh, is the same state again.  A file's content digest is
kept in the manifest and read again only when its size or mtime changed.

Debian's linux-source tree appends ``/*`` to the kernel's top .gitignore (its
packaging repository tracks only debian/); a top-level rule that ignores the
tree's own Makefile is such a rule, and the lab reads the top level without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lab import atomic, proc
from lab.errors import InfraError, UserError
from lab.kernel.worktree import remove_file

log = logging.getLogger("lab.kernel.source")

TIMEOUT = 600.0
_ENV = {"LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"}
# rel path → [size, mtime_ns, mode] of the user's file at the last sync, the copy's mtime
# and the SHA-256 of its content (of a link's target)
MANIFEST = "files.json"
# Kbuild's own test for "not clean" (the top Makefile): an O= build stops on any of them.
IN_TREE_CONFIG = ".config"
IN_TREE_DIRS = ("include/config/", "arch/x86/include/generated/")


def mirrors_dir(cache: Path) -> Path:
    return cache / "sources" / "tree"


@dataclass(frozen=True)
class Synced:
    """The copy after a sync: where it is, a fingerprint of the sources, what it cost."""

    tree: Path
    # Of every file's name, kind (executable, link) and content: an edit changes it, a
    # touch does not, and an edit undone gives it back.
    fingerprint: str
    files: int
    written: int
    removed: int


class Mirror:
    """The lab's copy of the plain tree at ``path`` (one per tree path)."""

    def __init__(self, path: Path, *, cache: Path) -> None:
        self.path = path
        digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
        self.root = mirrors_dir(cache) / f"{path.name or 'tree'}-{digest}"
        self.tree = self.root / "tree"

    def _git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        empty = self.root / "empty.git"
        try:
            if not (empty / "HEAD").is_file():
                self.root.mkdir(parents=True, exist_ok=True)
                proc.run(["git", "init", "--quiet", "--bare", str(empty)], phase="source:tree",
                         log_path=self.root / "git.log", timeout=60, env=_ENV)
            return proc.run(["git", f"--git-dir={empty}", f"--work-tree={self.path}", *args],
                            phase="source:tree", log_path=None, timeout=TIMEOUT,
                            cwd=self.path, env=_ENV, check=check)
        except proc.ProcessError as exc:
            if exc.returncode is None and "No such file" in exc.tail:
                raise UserError("tree:PATH needs git (it reads the tree's .gitignore "
                                "rules); install git") from None
            raise

    def _top_level(self) -> list[str]:
        """``--exclude`` arguments that read the top level without a rule that ignores
        the tree's own Makefile (Debian's ``/*``), or none when there is no such rule."""
        found = self._git("check-ignore", "--verbose", "--no-index", "Makefile", check=False)
        source, _, rest = found.stdout.strip().partition(":")
        number = rest.partition(":")[0]
        if found.returncode != 0 or source != ".gitignore" or not number.isdigit():
            return []
        lines = (self.path / ".gitignore").read_text(errors="replace").splitlines()
        del lines[int(number) - 1]
        rules = self.root / "top-level.gitignore"
        rules.write_text("\n".join(lines) + "\n")
        top = self._git("ls-files", "-z", "--others", "--directory",
                        f"--exclude-from={rules}").stdout
        names = {p.rstrip("/") for p in top.split("\0") if p and "/" not in p.rstrip("/")}
        # A command-line pattern outranks every .gitignore: "!/NAME" keeps NAME in.
        return [f"--exclude=!/{_glob_escape(n)}" for n in sorted(names)]

    def source_files(self) -> list[str]:
        """The tree's files that no .gitignore rule ignores (paths relative to the tree)."""
        out = self._git("ls-files", "-z", "--others", "--exclude-per-directory=.gitignore",
                        *self._top_level()).stdout
        files = [p for p in out.split("\0") if p]
        odd = [p for p in files if "\n" in p]
        if odd:
            raise InfraError(f"listing {self.path}: unexpected output {odd[0][:200]!r}",
                             phase="source:tree")
        return files

    @contextlib.contextmanager
    def synced(self) -> Iterator[Synced]:
        """The copy, synced from the tree and locked until the block ends (build inside)."""
        with atomic.locked(self.root / "tree.lock"):
            yield self._sync()

    def _sync(self) -> Synced:
        t0 = time.monotonic()
        files = self.source_files()
        clash = [p for p in files if p == IN_TREE_CONFIG or p.startswith(IN_TREE_DIRS)]
        if clash:
            raise UserError(
                f"tree:{self.path}: {clash[0]} is an in-tree build's and the tree's .gitignore "
                "rules do not ignore it; Kbuild refuses an out-of-tree build of sources "
                "holding .config, include/config or arch/x86/include/generated (\"The source "
                "tree is not clean\"): restore the kernel's .gitignore files, or run "
                f"`make -C {self.path} mrproper`")
        manifest_path = self.root / MANIFEST
        try:
            old: dict[str, list[int | str]] = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            old = {}
        have = _files_under(self.tree)
        new: dict[str, list[int | str]] = {}
        h = hashlib.sha256()
        written = 0
        for rel in sorted(files):
            src, dst = self.path / rel, self.tree / rel
            try:
                st = src.lstat()
            except FileNotFoundError:
                continue  # removed since the listing
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                continue
            key: list[int | str] = [st.st_size, st.st_mtime_ns, st.st_mode]
            before = old.get(rel)
            if rel in have and before is not None and len(before) == 5 and before[:3] == key:
                copied, digest = before[3:]
            else:
                try:
                    digest, was_written = _copy(src, dst, st)
                except OSError as exc:
                    raise UserError(f"tree:{self.path}: cannot read {rel}: "
                                    f"{exc.strerror}") from None
                written += was_written
                copied = dst.lstat().st_mtime_ns
            new[rel] = [*key, copied, digest]
            # The kind as git names it: what the build sees of the mode.
            kind = ("120000" if stat.S_ISLNK(st.st_mode)
                    else "100755" if st.st_mode & 0o111 else "100644")
            h.update(f"{rel}\0{kind}\0{digest}\n".encode())
        removed = 0
        for rel in have - new.keys():
            remove_file(self.tree, rel)
            removed += 1
        atomic.write_text(manifest_path, json.dumps(new) + "\n")
        log.info("source: synced %s into %s: %d files, %d written, %d removed (%.1f s)",
                 self.path, self.tree, len(new), written, removed, time.monotonic() - t0)
        return Synced(tree=self.tree, fingerprint=h.hexdigest()[:16], files=len(new),
                      written=written, removed=removed)


def _glob_escape(name: str) -> str:
    return "".join(f"\\{c}" if c in "*?[\\!# " else c for c in name)


def _files_under(root: Path) -> set[str]:
    """Every file and symlink below ``root``, relative to it."""
    found: set[str] = set()
    if not root.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        prefix = "" if rel == "." else rel + "/"
        found.update(prefix + n for n in filenames)
        found.update(prefix + d for d in dirnames if os.path.islink(os.path.join(dirpath, d)))
    return found


def _copy(src: Path, dst: Path, st: os.stat_result) -> tuple[str, bool]:
    """Make ``dst`` hold what ``src`` holds: the SHA-256 of that (of a link's target), and
    whether ``dst`` was written (a touched file keeps the copy's mtime: nothing to rebuild)."""
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(src)
        return (hashlib.sha256(os.fsencode(target)).hexdigest(),
                atomic.put_symlink(dst, target))
    data = src.read_bytes()
    # The copy's mtime is the time of the copy, newer than its objects.
    return (hashlib.sha256(data).hexdigest(),
            atomic.put_file(dst, data, executable=bool(st.st_mode & 0o111)))
