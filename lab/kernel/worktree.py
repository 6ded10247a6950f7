"""One lab-owned clone per kernel git repository, whose one work tree commits are checked out in.

``git:PATH@REV`` and ``lab bisect`` build commits of a user's repository here
instead of exporting each commit: ``git checkout`` rewrites only the files that
differ between two commits and leaves the others' mtimes alone, so make, in
the one object tree of this clone (lab.kernel.build), recompiles only what
changed.  ``worktree:PATH`` builds the user's working tree as it is: its HEAD
checked out here, then the files that differ from HEAD in the user's tree
(``git diff HEAD``, and the untracked files .gitignore does not ignore) copied
over it (``WorkingChanges``, ``Clone.checked_out(..., overlay=)``); a file is
written only when its content changed, so a one-file edit costs one compile
and a link.  Every work tree of a repository (``git worktree add``) shares its
one clone.

The clone is ``git clone --shared --no-checkout`` into
``<cache>/sources/git/<name>-<hash>/tree``: its objects are read from the user's
repository through ``objects/info/alternates``, so it costs only the refs and
the work tree, and nothing is ever written into the user's repository (its
checkout, index and refs stay as they are).  Commits the lab makes itself (a
revert for ``lab bisect --verify-revert``) live only in the clone.

A commit is checked out under an exclusive lock held until the caller is done
with the tree (a build), so two runs asking for two commits of one repository
take turns instead of building a mix of both.  If the user's repository is
garbage-collected so that a commit the clone reads disappears, the clone
cannot check it out either: that is the price of sharing the objects.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lab import atomic, proc
from lab.errors import InfraError, UserError

log = logging.getLogger("lab.kernel.source")

TIMEOUT = 1800.0  # a first checkout of a kernel tree writes ~90,000 files
_ENV = {"LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"}
# In the user's repository: no index refresh written back, no lock taken (git status
# and diff would otherwise update .git/index), and pathspecs taken literally.
_READ_ONLY = {**_ENV, "GIT_OPTIONAL_LOCKS": "0", "GIT_LITERAL_PATHSPECS": "1"}


def clones_dir(cache: Path) -> Path:
    return cache / "sources" / "git"


def repo_top(repo: Path, *, log_path: Path) -> Path:
    """The top level of the user's repository; UserError when ``repo`` is not in one."""
    if not repo.is_dir():
        raise UserError(f"git:{repo}: no such directory")
    try:
        out = proc.run(["git", "-C", str(repo), "rev-parse", "--show-toplevel"],
                       phase="source:git", log_path=log_path, timeout=60, env=_ENV).stdout
    except proc.ProcessError:
        raise UserError(f"git:{repo}: not a git repository") from None
    return Path(out.strip().splitlines()[-1]).resolve()


def repo_main(top: Path, *, log_path: Path) -> Path:
    """The repository a work tree belongs to: ``top`` itself, or for a linked work tree
    (``git worktree add``) the main one, so that all of them share one lab clone."""
    out = proc.run(["git", "-C", str(top), "rev-parse", "--git-common-dir"],
                   phase="source:git", log_path=log_path, timeout=60, env=_ENV).stdout
    common = (top / out.strip().splitlines()[-1]).resolve()
    return common.parent if common.name == ".git" else common


def rev_commit(git_dir: Path, rev: str, *, log_path: Path) -> str | None:
    """The full commit id ``rev`` names in the repository at ``git_dir``, None if none."""
    found = proc.run(["git", "-C", str(git_dir), "rev-parse", "--verify", "--quiet",
                      f"{rev}^{{commit}}"], phase="source:git", log_path=log_path,
                     timeout=60, check=False, env=_ENV)
    lines = found.stdout.strip().splitlines()
    return lines[-1] if found.returncode == 0 and lines else None


@dataclass(frozen=True)
class Clone:
    """The lab's clone of one user repository (``repo``) at ``root``."""

    repo: Path
    root: Path

    @property
    def key(self) -> str:
        return self.root.name

    @property
    def tree(self) -> Path:
        return self.root / "tree"

    @property
    def log_path(self) -> Path:
        return self.root / "git.log"

    def git(self, *args: str, check: bool = True, timeout: float = 600.0,
            env: dict[str, str] | None = None) -> str:
        """Run git in the clone; its output (the log keeps every command)."""
        return proc.run(["git", "-C", str(self.tree), *args], phase="source:git",
                        log_path=self.log_path, timeout=timeout, check=check,
                        env={**_ENV, **(env or {})}).stdout

    def commit(self, rev: str) -> str | None:
        """The full id of ``rev`` as the clone sees it (the user's commits and the lab's)."""
        return rev_commit(self.tree, rev, log_path=self.log_path)

    @contextlib.contextmanager
    def checked_out(self, commit: str,
                    overlay: WorkingChanges | None = None) -> Iterator[Path]:
        """The work tree at ``commit`` (with ``overlay``'s files over it), locked against
        other checkouts until the block ends."""
        with atomic.locked(self.root / "tree.lock"):
            t0 = time.monotonic()
            # The marker, not HEAD, says what the tree holds: a fresh --no-checkout
            # clone's HEAD names a commit whose files are not there, and a checkout or
            # copy a kill cut short leaves no marker.
            marker = self.root / "checked-out"
            want = commit if overlay is None else f"{commit} {overlay.digest}"
            have = marker.read_text().strip() if marker.is_file() else ""
            if have != want:
                marker.unlink(missing_ok=True)
                if have.split(" ")[0] != commit:
                    # -f: the tree is the lab's; a stray edit must not block a bisection.
                    self.git("checkout", "--quiet", "--force", "--detach", commit,
                             timeout=TIMEOUT)
                if overlay is not None or have != commit:
                    # Copied files may be left from another overlay (or one cut short).
                    self._overlay(commit, overlay)
                marker.write_text(want + "\n")
                log.info("source: checked out %s%s in %s (%.1f s)", commit[:12],
                         f" + {len(overlay.changes)} changed file(s) from {overlay.top}"
                         if overlay is not None else "", self.tree, time.monotonic() - t0)
            yield self.tree

    def _overlay(self, commit: str, overlay: WorkingChanges | None) -> None:
        """Make the work tree ``commit`` plus ``overlay``: files the tree holds beyond
        ``commit`` and the overlay go back to ``commit`` (or away), the overlay's files
        are written where their content differs."""
        wanted = {c.path for c in overlay.changes} if overlay is not None else set()
        out = self.git("status", "--porcelain", "-z", "--untracked-files=all", "--ignored",
                       "--no-renames", timeout=TIMEOUT)
        restore: list[str] = []
        for entry in _nul_split(out, where=f"git status in {self.tree}"):
            code, path = entry[:2], entry[3:]
            if path in wanted:
                continue
            if code in ("??", "!!"):
                remove_file(self.tree, path)
            else:
                restore.append(path)
        if restore:
            listing = self.root / "restore.lst"
            listing.write_bytes(b"".join(p.encode() + b"\0" for p in restore))
            self.git("checkout", "--force", commit, f"--pathspec-from-file={listing}",
                     "--pathspec-file-nul", timeout=TIMEOUT, env={"GIT_LITERAL_PATHSPECS": "1"})
            listing.unlink()
        if overlay is not None:
            overlay.copy_into(self.tree)

    @contextlib.contextmanager
    def locked(self) -> Iterator[Path]:
        """The work tree locked, to change it with git itself (a revert commits in it).

        What the tree holds is then unknown: the next ``checked_out`` checks out.
        """
        with atomic.locked(self.root / "tree.lock"):
            (self.root / "checked-out").unlink(missing_ok=True)
            yield self.tree


def clone_key(top: Path) -> str:
    """The clone's directory name: readable, and unique per repository path (the main
    work tree's, ``repo_main``)."""
    digest = hashlib.sha256(str(top).encode()).hexdigest()[:12]
    return f"{top.name or 'repo'}-{digest}"


def clone_for(top: Path, *, cache: Path) -> Clone:
    """The lab's clone of the repository at ``top`` (``repo_main``'s answer), made on first
    use (seconds: no objects)."""
    base = clones_dir(cache)
    clone = Clone(repo=top, root=base / clone_key(top))
    if (clone.tree / ".git").is_dir():
        return clone
    atomic.clean_stale_temps(base)
    with atomic.temp_dir(base) as tmp:
        t0 = time.monotonic()
        try:
            proc.run(["git", "clone", "--quiet", "--shared", "--no-checkout", str(top),
                      str(tmp / "tree")], phase="source:git", log_path=tmp / "git.log",
                     timeout=TIMEOUT, env=_ENV)
            for key, value in (("gc.auto", "0"),  # the objects are the user's: never repack
                               ("advice.detachedHead", "false")):
                proc.run(["git", "-C", str(tmp / "tree"), "config", key, value],
                         phase="source:git", log_path=tmp / "git.log", timeout=60, env=_ENV)
        except proc.ProcessError as exc:
            raise InfraError(f"cloning {top}: {exc}", phase="source:git",
                             log=tmp / "git.log") from None
        (tmp / "repo.txt").write_text(f"{top}\n")
        log.info("source: cloned %s into %s (shared objects) in %.1f s", top, clone.root,
                 time.monotonic() - t0)
        atomic.publish(tmp, clone.root)
    if not (clone.tree / ".git").is_dir():
        raise InfraError(f"{clone.root} has no clone after publishing", phase="source:git")
    return clone


# --- a user's working tree ---------------------------------------------------------------


def _nul_split(out: str, *, where: str) -> list[str]:
    """git's ``-z`` output as a list; a newline in it is a message mixed in, not a path."""
    items = [p for p in out.split("\0") if p]
    odd = [p for p in items if "\n" in p]
    if odd:
        raise InfraError(f"{where}: unexpected output {odd[0][:200]!r}", phase="source:git")
    return items


def _state(path: Path) -> str:
    """A file's state as git would name it: mode and a SHA-256 of its content, or deleted."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return "deleted"
    if stat.S_ISLNK(st.st_mode):
        return "120000 " + hashlib.sha256(os.readlink(path).encode()).hexdigest()
    if not stat.S_ISREG(st.st_mode):
        return "deleted"  # a directory where the file was: its files are listed themselves
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return f"{'100755' if st.st_mode & 0o111 else '100644'} {digest}"


def remove_file(tree: Path, rel: str) -> None:
    """Remove ``rel`` from ``tree``, and the directories that leaves empty."""
    target = tree / rel
    if target.is_dir() and not target.is_symlink():
        return
    target.unlink(missing_ok=True)
    parent = target.parent
    while parent != tree:
        try:
            parent.rmdir()
        except OSError:
            break
        parent = parent.parent


@dataclass(frozen=True)
class Change:
    """One path where a working tree differs from its HEAD, and what it holds there."""

    path: str
    state: str  # "100644 <sha256>", "100755 ...", "120000 <sha256 of the target>", "deleted"


@dataclass(frozen=True)
class WorkingChanges:
    """What a user's working tree holds beyond its HEAD commit, read without writing."""

    top: Path
    commit: str
    changes: tuple[Change, ...]
    modified: int  # tracked paths that differ from HEAD (staged or not, deleted included)
    untracked: int  # files no .gitignore rule ignores

    @property
    def digest(self) -> str:
        """A SHA-256 (short) of every changed path and its content: the build's identity."""
        h = hashlib.sha256()
        for c in self.changes:
            h.update(f"{c.path}\0{c.state}\n".encode())
        return h.hexdigest()[:16]

    def copy_into(self, tree: Path) -> None:
        """Write the changed files into ``tree`` where they differ; UserError when the user's
        tree changed since it was read (the identity would not name what was built)."""
        for c in sorted(self.changes, key=lambda c: (c.state != "deleted", c.path)):
            src, dst = self.top / c.path, tree / c.path
            if c.state == "deleted":
                if _state(src) != "deleted":
                    raise _moved(self.top, c.path)
                if dst.is_dir() and not dst.is_symlink():
                    continue
                dst.unlink(missing_ok=True)
                continue
            if c.state.startswith("120000 "):
                target = os.readlink(src) if src.is_symlink() else None
                if target is None or _state(src) != c.state:
                    raise _moved(self.top, c.path)
                atomic.put_symlink(dst, target)
                continue
            try:
                data = src.read_bytes()
            except OSError:
                raise _moved(self.top, c.path) from None
            mode, digest = c.state.split(" ", 1)
            if hashlib.sha256(data).hexdigest() != digest:
                raise _moved(self.top, c.path)
            # Unchanged since the last build: not written, its mtime kept.
            atomic.put_file(dst, data, executable=mode == "100755")


def _moved(top: Path, path: str) -> UserError:
    return UserError(f"{top / path} changed while the lab was reading {top}; run again "
                     "once the edit is saved")


def working_changes(top: Path, commit: str, *, log_path: Path) -> WorkingChanges:
    """The files of the work tree at ``top`` that differ from ``commit`` (its HEAD): tracked
    ones (``git diff``: staged, unstaged, deleted) and untracked ones .gitignore does not
    ignore.  Reads only: the user's index is not refreshed, no lock is taken."""
    with tempfile.TemporaryDirectory(prefix="kernel-lab-index-") as scratch:
        env = dict(_READ_ONLY)
        # `git diff` refreshes stat-dirty entries and writes the index it used, optional
        # locks or not (git 2.39): it gets a copy, so the user's index is never written.
        index = _index_of(top)
        if index.is_file():
            shutil.copy2(index, Path(scratch) / "index")
            env["GIT_INDEX_FILE"] = str(Path(scratch) / "index")
        return _listed_changes(top, commit, env=env, log_path=log_path)


def _index_of(top: Path) -> Path:
    """The index file of the work tree at ``top`` (a linked work tree has its own)."""
    out = proc.run(["git", "-C", str(top), "rev-parse", "--git-path", "index"],
                   phase="source:git", log_path=None, timeout=60, env=_READ_ONLY).stdout
    found = Path(out.strip().splitlines()[-1])
    return found if found.is_absolute() else top / found


def _listed_changes(top: Path, commit: str, *, env: dict[str, str],
                    log_path: Path) -> WorkingChanges:
    def listed(*args: str) -> list[str]:
        out = proc.run(["git", "-C", str(top), *args], phase="source:git", log_path=None,
                       timeout=TIMEOUT, env=env).stdout
        return _nul_split(out, where=f"git {args[0]} in {top}")

    try:
        tracked = listed("diff", commit, "--name-only", "-z", "--no-renames",
                         "--ignore-submodules=all", "--no-ext-diff", "--")
        untracked = listed("ls-files", "-z", "--others", "--exclude-standard")
    except proc.ProcessError as exc:
        raise InfraError(f"reading the working tree {top}: {exc}", phase="source:git",
                         log=log_path) from None
    paths = sorted(set(tracked) | set(untracked))
    return WorkingChanges(top=top, commit=commit,
                          changes=tuple(Change(p, _state(top / p)) for p in paths),
                          modified=len(set(tracked)), untracked=len(set(untracked) - set(tracked)))
