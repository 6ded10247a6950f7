"""A fake environment for `lab bisect` over a real, tiny git history (syzkaller's bisect_test.go).

The history is real git: numbered commits of a stub kernel tree (the files
lab.bisect checks for) whose ``fs/aio.c`` says what each commit does, one
marker a line: ``REGRESSION`` (the target fails from here on), ``BROKEN`` (the
build fails), ``SPLAT`` (an unrelated WARNING on the target), ``INFRA`` (the
boot fails).  The fakes stand in at the seams, reading the commit's content:

- ``FakeBuilder``: the build (a failed build for BROKEN; the "image" is a hash
  of fs/aio.c, so a commit that leaves it alone builds the same image);
- ``FakeLabRun``: the `lab run` process.  It gets the argv lab.bisect.ports
  builds, writes a run directory with results.jsonl through
  lab.results.record as the real one does, and returns its exit status.  At a
  REGRESSION commit the target fails with probability ``fail_rate`` (seeded).

Run as a script it bisects with these fakes (for the kill-and-resume test).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from lab.bisect.command import BisectOptions, Seams, bisect
from lab.bisect.ports import Built
from lab.kernel import source
from lab.options import GuestOptions
from lab.results.cell import cell_label, short_label
from lab.results.record import Record, new_run_dir
from lab.run.config import RunConfig

TARGET = "scenarios/aio/test_io_destroy.py::test_destroy_twice_is_einval"
OTHER = "scenarios/aio/test_io_destroy.py::test_aio_nr_accounting"
KEYWORD = "destroy_twice or aio_nr"

_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t", "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
        "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z", "LC_ALL": "C"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, text=True,
                          capture_output=True, env={**os.environ, **_ENV}).stdout.strip()


def make_history(repo: Path, n: int, marks: dict[int, list[str]]) -> list[str]:
    """Commits 0..n-1; commit i's fs/aio.c holds the markers of ``marks`` at keys <= i that
    are still on (a marker at i is on from i; "-NAME" at j turns it off from j)."""
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    for f, text in (("Makefile", "VERSION = 7\nPATCHLEVEL = 2\nSUBLEVEL = 0\n"),
                    ("Kconfig", "config AIO\n\tbool\n"), ("arch/x86/Kconfig", "\n"),
                    ("init/main.c", "int main;\n")):
        (repo / f).parent.mkdir(parents=True, exist_ok=True)
        (repo / f).write_text(text)
    on: set[str] = set()
    commits = []
    for i in range(n):
        for m in marks.get(i, []):
            if m.startswith("-"):
                on.discard(m[1:])
            else:
                on.add(m)
        (repo / "fs").mkdir(exist_ok=True)
        code = "".join(f"{m}\n" for m in sorted(on) if not m.startswith("DOC:"))
        (repo / "fs" / "aio.c").write_text(code or "ok\n")
        (repo / "Documentation").mkdir(exist_ok=True)
        # Each commit adds its own file: any one of them reverts cleanly on a later one.
        (repo / "Documentation" / f"c{i}.txt").write_text(f"{i}\n")
        # "DOC:" markers act on the tests but not on the build (an image-identical change).
        docs = "".join(f"{m[4:]}\n" for m in sorted(on) if m.startswith("DOC:"))
        (repo / "Documentation" / "n.txt").write_text(docs or "none\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", f"c{i}" + (f" {' '.join(marks[i])}" if i in marks else ""))
        commits.append(git(repo, "rev-parse", "HEAD"))
    return commits


_CONTENT: dict[tuple[str, Path, str], str] = {}


def content(spec: str, cache: Path, path: str = "fs/aio.c") -> str:
    """A file at the commit a ``git:REPO@SHA`` spec names (the lab's clone sees lab-made ones)."""
    if (spec, cache, path) not in _CONTENT:  # a commit's content never changes: ask git once
        repo, _, rev = spec.removeprefix("git:").rpartition("@")
        found = source.git_commit(Path(repo), rev, cache=cache)
        _CONTENT[spec, cache, path] = found.clone.git("show", f"{found.commit}:{path}")
    return _CONTENT[spec, cache, path]


class FakeBuilder:
    def __init__(self, repo: Path, cache: Path) -> None:
        self.repo, self.cache = repo, cache
        self.built: list[str] = []

    def build(self, point: str) -> Built:
        spec = f"git:{self.repo}@{point}"
        self.built.append(point)
        text = content(spec, self.cache)
        if "BROKEN" in text:
            return Built(ok=False, spec=spec, seconds=0.1,
                         error="build:make: make failed: fs/aio.c:1: error: BROKEN")
        return Built(ok=True, spec=spec, seconds=0.1,
                     artifact=hashlib.sha256(text.replace("SPLAT\n", "").encode()).hexdigest()[:16])


class FakeLabRun:
    """The `lab run` process: results for the selected tests, from the commit's content."""

    def __init__(self, cache: Path, *, fail_rate: float = 1.0, seed: int = 0) -> None:
        self.cache = cache
        self.fail_rate = fail_rate
        self.rng = random.Random(seed)
        self.calls: list[list[str]] = []
        self.known_issues: list[str] = []  # each run's --known-issues

    def __call__(self, argv: Sequence[str], log_path: Path) -> int:
        self.calls.append(list(argv))
        time.sleep(float(os.environ.get("FAKE_RUN_DELAY", "0")))  # the kill test's window
        spec = argv[argv.index("--kernel") + 1]
        out = Path(argv[argv.index("--results") + 1])
        assert argv[argv.index("-k") + 1] == KEYWORD
        text = content(spec, self.cache) + content(spec, self.cache, "Documentation/n.txt")
        run_dir = new_run_dir(out, short_label(spec))
        log_path.write_text(f"fake lab run {spec}\n")
        variant = argv[argv.index("--variant") + 1] if "--variant" in argv else None
        label = cell_label(spec, variant)  # the cell parameter of a real run's test ids
        # The fake's host has no working KVM: "auto" boots TCG, as here.
        asked = argv[argv.index("--accel") + 1]
        accel = {"name": "tcg" if asked == "auto" else asked}
        self.known_issues.append(argv[argv.index("--known-issues") + 1]
                                 if "--known-issues" in argv else "(the default)")
        done: list[Record] = []
        if "INFRA" in text:
            for test in (TARGET, OTHER):
                done.append(Record(test=f"{test}[{label}]", verdict="INFRA", cell=label,
                                           duration=0.0, reason="boot: no SSH after 180 s"))
            _write(run_dir, done, accel)
            return 3
        failed = "REGRESSION" in text and self.rng.random() < self.fail_rate
        target = Record(test=f"{TARGET}[{label}]", verdict="PASS", duration=0.1,
                                cell=label)
        if failed:
            target.verdict, target.reason = "FAIL", "AssertionError: assert 'ENOENT' == 'EINVAL'"
        elif "SPLAT" in text:
            title = "WARNING in percpu_ref_kill_and_confirm"
            target.verdict = "FAIL"
            target.reason = f"kernel splat during the test: {title}\n{title}\n..."
            target.splats = [{"kind": "WARNING", "title": title, "fatal": False}]
        done.append(target)
        for n in (1, 128):
            done.append(Record(test=f"{OTHER}[{label}-{n}]", verdict="PASS",
                                       duration=0.1, cell=label))
        _write(run_dir, done, accel)
        return 1 if target.verdict != "PASS" else 0


def _write(run_dir: Path, done: list[Record], accel: dict[str, str]) -> None:
    # results.jsonl as lab.results.record writes it, in one go: a fake run need not fsync.
    for r in done:
        r.accel = dict(accel)
    with open(run_dir / "results.jsonl", "w") as f:
        f.writelines(json.dumps(dataclasses.asdict(r), sort_keys=True) + "\n" for r in done)


def collect(suite: Path, keyword: str, spec: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return (TARGET, f"{OTHER}[1]", f"{OTHER}[128]"), ()


def run(repo: Path, cache: Path, state: Path, *, good: str, bad: str, runs: str | None = None,
        fail_rate: float = 1.0, seed: int = 0, verify_revert: bool = False, reuse: bool = True,
        resume: bool = False, guest: GuestOptions | None = None,
        known_issues: Path | None = None) -> tuple[int, FakeBuilder, FakeLabRun]:
    builder = FakeBuilder(repo, cache)
    launch = FakeLabRun(cache, fail_rate=fail_rate, seed=seed)
    if resume:
        opts = BisectOptions(resume=state, runs=runs, run=RunConfig(cache=cache), reuse=reuse,
                             verify_revert=verify_revert)
    else:
        run = RunConfig(keyword=KEYWORD, cache=cache, guest=guest or GuestOptions(),
                        **({"known_issues": known_issues} if known_issues else {}))
        opts = BisectOptions(run=run, repo=repo, good=good, bad=bad, runs=runs,
                             state=state, reuse=reuse, verify_revert=verify_revert)
    rc = bisect(opts, argv=["lab", "bisect"],
                seams=Seams(builder=builder, launch=launch, collect=collect))
    return rc, builder, launch


def result(state: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((state / "bisect.json").read_text())
    return data


if __name__ == "__main__":
    # python tests/bisect_fake.py REPO CACHE STATE GOOD BAD RUNS: one fake bisection.
    repo_, cache_, state_, good_, bad_, runs_ = sys.argv[1:7]
    rc_, _, _ = run(Path(repo_), Path(cache_), Path(state_), good=good_, bad=bad_, runs=runs_,
                    reuse=False)
    sys.exit(rc_)
