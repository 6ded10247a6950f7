"""Synthetic kernel git histories made from Debian's linux-source tree (real bisections, bench).

``make(cache, tree, name, changes)`` commits the unpacked tree once (``git add``
reads it in place: nothing is copied) and then one commit per change, written
with plumbing (hash-object, update-index on a private index, commit-tree), so
a 16-commit history costs one ``git add`` of the tree (~50 s here) and
milliseconds per commit.  Author, committer and dates are fixed, so the same
tree and changes give the same commit ids every time, and the history is kept
under ``<cache>/histories/`` and reused: the lab's clone of it (and its object
tree) then stays warm between runs, as a developer's does.

The repository's own work tree stays empty: its commits are always named
(``git:REPO@COMMIT``; a bare ``git:REPO`` is refused, every file "deleted").  A
worktree: test adds a linked work tree for a while (tests/test_devtree_real.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lab import atomic, proc
from lab.errors import InfraError
from lab.kernel.source import SourceTree

log = logging.getLogger("lab.bench")

_WHO = {"GIT_AUTHOR_NAME": "kernel-lab", "GIT_AUTHOR_EMAIL": "kernel-lab@localhost",
        "GIT_COMMITTER_NAME": "kernel-lab", "GIT_COMMITTER_EMAIL": "kernel-lab@localhost",
        "GIT_AUTHOR_DATE": "2026-01-01T00:00:00+0000",
        "GIT_COMMITTER_DATE": "2026-01-01T00:00:00+0000", "LC_ALL": "C"}
DONE = "history.json"  # written last: its commits


@dataclass(frozen=True)
class Change:
    """One commit: a subject and, per path, a function of the file's text (None: new file)."""

    subject: str
    edits: dict[str, Callable[[str | None], str]]


@dataclass(frozen=True)
class History:
    repo: Path
    commits: list[str]  # commits[0] is the tree itself
    subjects: list[str]


def _git(repo: Path, *args: str, env: dict[str, str] | None = None, stdin: str | None = None,
         log_path: Path, timeout: float = 1800, raw: bool = False) -> str:
    full = {**_WHO, **(env or {})}
    if stdin is None:
        out = proc.run(["git", "-C", str(repo), *args], phase="history:git",
                       log_path=None if raw else log_path, timeout=timeout, env=full).stdout
        return out if raw else out.strip()
    tmp = repo / ".git" / "lab-stdin"
    tmp.write_text(stdin)  # proc.run gives the child no stdin: go through a file
    try:
        return proc.run(["git", "-C", str(repo), *args, str(tmp)], phase="history:git",
                        log_path=log_path, timeout=timeout, env=full).stdout.strip()
    finally:
        tmp.unlink()


def make(cache: Path, tree: SourceTree, name: str, changes: Sequence[Change]) -> History:
    """The history ``changes`` make on top of ``tree``: made once, then found in the cache."""
    digest = hashlib.sha256(json.dumps([tree.identity, [c.subject for c in changes]])
                            .encode()).hexdigest()[:12]
    final = cache / "histories" / f"{name}-{digest}"
    done = final / "repo" / ".git" / DONE
    if done.is_file():
        data = json.loads(done.read_text())
        return History(repo=final / "repo", commits=data["commits"], subjects=data["subjects"])
    atomic.clean_stale_temps(final.parent)
    with atomic.temp_dir(final.parent) as tmp:
        repo = tmp / "repo"
        logp = tmp / "git.log"
        repo.mkdir()
        t0 = time.monotonic()
        _git(repo, "init", "-q", "-b", "main", log_path=logp)
        # -f: Debian's top-level .gitignore ignores everything but debian/.
        _git(repo, f"--work-tree={tree.path}", "add", "-A", "-f", log_path=logp,
             env={"GIT_DIR": str(repo / ".git")})
        base = f"Linux {tree.version} from {tree.identity}"
        _git(repo, f"--work-tree={tree.path}", "commit", "-q", "-m", base, log_path=logp,
             env={"GIT_DIR": str(repo / ".git")})
        log.info("history: committed %s in %.1f s", tree.path, time.monotonic() - t0)
        commits = [_git(repo, "rev-parse", "HEAD", log_path=logp)]
        subjects = [base]
        index = {"GIT_INDEX_FILE": str(repo / ".git" / "lab-index")}
        _git(repo, "read-tree", "HEAD", env=index, log_path=logp)
        for change in changes:
            for path, edit in change.edits.items():
                try:
                    old: str | None = _git(repo, "show", f"HEAD:{path}", log_path=logp,
                                           raw=True)
                except proc.ProcessError:
                    old = None
                new = edit(old)
                blob = _git(repo, "hash-object", "-w", "--path", path, stdin=new,
                            log_path=logp)
                _git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}",
                     env=index, log_path=logp)
            tree_id = _git(repo, "write-tree", env=index, log_path=logp)
            commit = _git(repo, "commit-tree", tree_id, "-p", commits[-1], "-m",
                          change.subject, log_path=logp)
            _git(repo, "update-ref", "refs/heads/main", commit, log_path=logp)
            commits.append(commit)
            subjects.append(change.subject)
        os.unlink(repo / ".git" / "lab-index")
        (repo / ".git" / DONE).write_text(json.dumps({"commits": commits,
                                                      "subjects": subjects}) + "\n")
        atomic.publish(tmp, final)
    if not done.is_file():
        raise InfraError(f"{final} has no {DONE} after publishing", phase="history:git")
    return make(cache, tree, name, changes)


def forget_builds(cache: Path, top: Path) -> list[str]:
    """Remove the built kernels of every commit the lab's clone of ``top`` knows (the
    history's, and reverts the lab made), with or without uncommitted changes on top
    (``worktree:``), so that a bisection or a worktree build over it builds again."""
    from lab.kernel import build, worktree
    from lab.kernel.artifact import METADATA

    clone = worktree.clone_for(top, cache=cache)
    gone = []
    for meta in build.built_dir(cache).glob(f"*/{METADATA}"):
        # The raw JSON: a shared cache may hold entries that newer code wrote.
        packages = json.loads(meta.read_text()).get("packages") or [""]
        ident = str(packages[0])
        kind, _, rest = ident.partition(":")
        commit = rest.partition("+")[0]
        if kind in ("git", "worktree") and clone.commit(commit) == commit:
            shutil.rmtree(meta.parent)
            gone.append(ident)
    return gone


# --- the histories the lab uses --------------------------------------------------------------

AIO = "fs/aio.c"
_DESTROY_TAIL = ('\tpr_debug("EINVAL: invalid context id\\n");\n\treturn -EINVAL;\n}\n\n'
                 'static void aio_remove_iocb')


def _note(n: int) -> Change:
    return Change(f"Documentation: kernel-lab note {n}",
                  {f"Documentation/kernel-lab/note-{n}.txt": lambda _: f"note {n}\n"})


def replace(old: str, new: str) -> Callable[[str | None], str]:
    def edit(text: str | None) -> str:
        if text is None or text.count(old) != 1:
            raise InfraError(f"the tree's {AIO} does not hold the expected text once: "
                             f"{old[:60]!r}", phase="history:edit")
        return text.replace(old, new)
    return edit


BREAK = ("#include <linux/kernel.h>\n",
         "#include <linux/kernel.h>\n#error \"kernel-lab: a commit that does not build\"\n")
ENOENT = (_DESTROY_TAIL, _DESTROY_TAIL.replace("return -EINVAL;", "return -ENOENT;", 1))


def aio_regression_changes(n: int = 15, *, broken: int = 7, culprit: int = 10) -> list[Change]:
    """n commits on the tree: notes, a build break at ``broken`` repaired by the next commit,
    and at ``culprit`` io_destroy of an unknown context returning ENOENT instead of EINVAL
    (scenarios/aio/test_io_destroy.py::test_destroy_twice_is_einval sees it)."""
    changes = []
    for i in range(1, n + 1):
        if i == broken:
            changes.append(Change("aio: a change that does not build", {AIO: replace(*BREAK)}))
        elif i == broken + 1:
            changes.append(Change("aio: build again", {AIO: replace(BREAK[1], BREAK[0])}))
        elif i == culprit:
            changes.append(Change("aio: io_destroy of an unknown context returns ENOENT",
                                  {AIO: replace(*ENOENT)}))
        else:
            changes.append(_note(i))
    return changes
