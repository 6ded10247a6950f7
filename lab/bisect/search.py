"""The search: `git bisect` in the lab's clone, or a binary search over an ordered list.

Both answer the driver the same way: the next point to test (with how many
remain and roughly how many steps), the first bad point, or the points that
only skipped ones leave ("the first bad commit is one of ...").

`git bisect` runs with ``--no-checkout`` in the clone of lab.kernel.worktree:
it only moves ``BISECT_HEAD``; the builder checks commits out under the work
tree's lock.  The session replays the journal's verdicts into a fresh
``git bisect start`` each time, as ``git bisect replay`` does, so the journal
is the state and git's own bisect files are scratch.  One bisection at a time
uses a clone (``bisect.lock``).
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from lab.bisect.decision import Verdict
from lab.errors import InfraError, UserError
from lab.kernel.worktree import Clone
from lab.proc import ProcessError


@dataclass(frozen=True)
class Next:
    """What the search says after a verdict."""

    point: str | None = None  # the next one to test
    left: int = 0  # points still possible (the next one included)
    steps: int = 0  # roughly, after the next one
    first_bad: str | None = None  # found
    only_skipped: tuple[str, ...] = field(default=())  # the first bad is one of these


_LEFT = re.compile(r"Bisecting: (\d+) revisions? left to test after this \(roughly (\d+) steps?\)")
_FIRST = re.compile(r"^([0-9a-f]{40}) is the first bad commit", re.M)


class GitSearch:
    """`git bisect --no-checkout` in the lab's clone."""

    def __init__(self, clone: Clone) -> None:
        self.clone = clone

    @contextlib.contextmanager
    def session(self) -> Iterator[GitSearch]:
        """Hold the clone's bisect lock; reset git's bisect state on the way out."""
        lock = self.clone.root / "bisect.lock"
        with open(lock, "w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError(f"another `lab bisect` of {self.clone.repo} is running "
                                f"(it holds {lock}); wait for it or resume it later") from None
            try:
                yield self
            finally:
                self._git("bisect", "reset", check=False)
                fcntl.flock(f, fcntl.LOCK_UN)

    def _git(self, *args: str, check: bool = True) -> str:
        return self.clone.git(*args, check=check)

    def start(self, bad: str, good: str) -> Next:
        self._git("bisect", "reset", check=False)
        return self._after(self._mark(["bisect", "start", "--no-checkout", bad, good]))

    def mark(self, point: str, verdict: Verdict) -> Next:
        return self._after(self._mark(["bisect", verdict.value, point]))

    def _mark(self, args: list[str]) -> tuple[int, str]:
        try:
            return 0, self._git(*args)
        except ProcessError as exc:
            if exc.returncode in (1, 2):  # 2: only skipped commits left
                return exc.returncode, self._git("bisect", "log", check=False) + "\n" + exc.tail
            raise InfraError(f"git {' '.join(args)} failed: {exc}", phase="bisect:git",
                             log=self.clone.log_path) from None

    def _after(self, answer: tuple[int, str]) -> Next:
        rc, out = answer
        found = _FIRST.search(out)
        if rc == 0 and found:
            return Next(first_bad=found.group(1))
        if "only 'skip'ped commits left" in out:
            return Next(only_skipped=self._possible())
        m = _LEFT.search(out)
        if rc != 0 or m is None:
            raise InfraError(f"git bisect said something the lab does not understand: "
                             f"{out.strip()[-300:]}", phase="bisect:git", log=self.clone.log_path)
        head = self._git("rev-parse", "BISECT_HEAD").strip()
        return Next(point=head, left=int(m.group(1)) + 1, steps=int(m.group(2)))

    def _possible(self) -> tuple[str, ...]:
        log = self._git("bisect", "log", check=False)
        return tuple(re.findall(r"^# possible first bad commit: \[([0-9a-f]{40})\]", log, re.M))

    def log(self) -> str:
        return self._git("bisect", "log", check=False)


class ListSearch:
    """A binary search over points in order (versions), with the same answers as git's."""

    def __init__(self, points: Sequence[str]) -> None:
        self.points = list(points)
        self.good = 0
        self.bad = len(self.points) - 1
        self.skipped: set[str] = set()

    @contextlib.contextmanager
    def session(self) -> Iterator[ListSearch]:
        yield self

    def start(self, bad: str, good: str) -> Next:
        self.good, self.bad = self.points.index(good), self.points.index(bad)
        self.skipped = set()
        return self._next()

    def mark(self, point: str, verdict: Verdict) -> Next:
        i = self.points.index(point)
        if verdict == Verdict.GOOD:
            self.good = max(self.good, i)
        elif verdict == Verdict.BAD:
            self.bad = min(self.bad, i)
        else:
            self.skipped.add(point)
        return self._next()

    def _next(self) -> Next:
        between = self.points[self.good + 1:self.bad]
        left = [p for p in between if p not in self.skipped]
        if not left:
            if not between:
                return Next(first_bad=self.points[self.bad])
            return Next(only_skipped=(*between, self.points[self.bad]))
        middle = (self.good + self.bad) / 2
        pick = min(left, key=lambda p: (abs(self.points.index(p) - middle),
                                        self.points.index(p)))
        return Next(point=pick, left=len(left), steps=math.ceil(math.log2(len(left) + 1)) - 1)


def subject(clone: Clone, commit: str) -> str:
    return clone.git("log", "-1", "--format=%s", commit).strip()


def parents(clone: Clone, commit: str) -> list[str]:
    return clone.git("log", "-1", "--format=%P", commit).split()


def diffstat(clone: Clone, commit: str) -> str:
    """What the commit changed against its first parent (a merge: what it brought in)."""
    first = parents(clone, commit)[:1]
    if not first:
        return clone.git("show", "--stat", "--format=", "--no-color", commit).rstrip()
    return clone.git("diff", "--stat", "--no-color", first[0], commit).rstrip()


def revert_onto(clone: Clone, culprit: str, onto: str) -> str | None:
    """A commit, only in the clone, that reverts ``culprit`` on top of ``onto``; None if it
    does not apply cleanly."""
    who = ["-c", "user.name=kernel-lab", "-c", "user.email=kernel-lab@localhost"]
    # Dated as ``onto``: the same revert is the same commit (and cached kernel) every time.
    date = clone.git("log", "-1", "--format=%cI", onto).strip()
    with clone.locked():
        clone.git("checkout", "--quiet", "--force", "--detach", onto, timeout=1800)
        try:
            clone.git(*who, "revert", "--no-edit", culprit, timeout=600,
                      env={"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date})
        except ProcessError:
            clone.git("revert", "--abort", check=False)
            return None
        return clone.git("rev-parse", "HEAD").strip()

