"""One lab-owned clone per kernel git repository, whose one work tree commits are checked out in.

``git:PATH@REV`` and ``lab bisect`` build commits of a user's repository here
instead of exporting each commit: ``git checkout`` rewrites only the files that
differ between two commits and leaves the others' mtimes alone, so make, in
the one object tree of this clone (lab.kernel.build), recompiles only what
changed.

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
import fcntl
import hashlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lab import atomic, proc
from lab.errors import InfraError, UserError

log = logging.getLogger("lab.kernel.source")

TIMEOUT = 1800.0  # a first checkout of a kernel tree writes ~90,000 files
_ENV = {"LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"}


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
    def checked_out(self, commit: str) -> Iterator[Path]:
        """The work tree at ``commit``, locked against other checkouts until the block ends."""
        lock = self.root / "tree.lock"
        with open(lock, "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                t0 = time.monotonic()
                # The marker, not HEAD, says what the tree holds: a fresh --no-checkout
                # clone's HEAD names a commit whose files are not there, and a checkout a
                # kill cut short leaves no marker.
                marker = self.root / "checked-out"
                if not marker.is_file() or marker.read_text().strip() != commit:
                    marker.unlink(missing_ok=True)
                    # -f: the tree is the lab's; a stray edit must not block a bisection.
                    self.git("checkout", "--quiet", "--force", "--detach", commit,
                             timeout=TIMEOUT)
                    marker.write_text(commit + "\n")
                    log.info("source: checked out %s in %s (%.1f s)", commit[:12], self.tree,
                             time.monotonic() - t0)
                yield self.tree
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def locked(self) -> Iterator[Path]:
        """The work tree locked, to change it with git itself (a revert commits in it).

        What the tree holds is then unknown: the next ``checked_out`` checks out.
        """
        with open(self.root / "tree.lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                (self.root / "checked-out").unlink(missing_ok=True)
                yield self.tree
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def clone_key(top: Path) -> str:
    """The clone's directory name: readable, and unique per repository path."""
    digest = hashlib.sha256(str(top).encode()).hexdigest()[:12]
    return f"{top.name or 'repo'}-{digest}"


def clone_for(top: Path, *, cache: Path) -> Clone:
    """The lab's clone of the repository at ``top``, made on first use (seconds: no objects)."""
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
