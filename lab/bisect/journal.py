"""A bisection's state: an append-only JSON-lines journal, replayed like `git bisect log`.

``<state>/journal.jsonl`` holds, one JSON object a line, each written with one
``write`` and an fsync:

- ``start``: what is bisected (repo, endpoints as given and as commits, -k or
  --exec's program with its SHA-256 (a resumed bisection refuses a changed one),
  variant, suite, the selected tests, --bad-if and --runs as given);
- ``build``: a commit's build (ok or not, the image's hash, seconds, error);
- ``run``: one ``lab run`` at a commit: config hash, image hash, verdict, reason
  and splat titles per test, exit status, duration, its run directory;
- ``step``: the verdict a commit got (for people; replay re-derives it);
- ``resume``, ``result``: when a session resumed (and with which --runs), and
  what it found.

Nothing is ever rewritten: a killed lab loses at most the line being written,
and a torn last line is ignored on replay, so at most the step under way is
lost.  Runs are also appended to ``<cache>/bisect/runs.jsonl``, the store that
later bisections of the same tree and config reuse (keyed by commit and
config hash, and made under the same conditions: the lab's own code, the
accelerator and the known issues; a run serves any -k whose tests it recorded).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.bisect.classify import Observed
from lab.errors import UserError
from lab.options import GuestOptions

FORMAT = 1
JOURNAL = "journal.jsonl"
# The start fields that name a bisection: a state directory holding another is refused.
IDENTITY = ("mode", "repo", "good_point", "bad_point", "keyword", "variant", "suite",
            "exec")


def append_line(path: Path, obj: Mapping[str, Any]) -> None:
    """One line, one write, fsynced: a killed writer leaves at most a torn last line."""
    line = json.dumps(obj, sort_keys=True) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = "\n" + line  # end a line torn by a kill, so this one stays whole
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_lines(path: Path) -> Iterator[dict[str, Any]]:
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue  # torn by a kill mid-write
        if isinstance(obj, dict):
            yield obj


@dataclass(frozen=True)
class Run:
    """One `lab run` at a commit (or version)."""

    point: str
    config_hash: str
    artifact: str
    results: dict[str, Observed]
    exit_code: int
    seconds: float
    run_dir: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    reused_from: str = ""  # the state directory whose run this was
    # The conditions it ran under (Conditions); "" in a journal from before they were kept.
    lab: str = ""
    accel: str = ""
    known_issues: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "run", "id": self.id, "point": self.point,
                "config_hash": self.config_hash, "artifact": self.artifact,
                "results": {t: r.to_dict() for t, r in self.results.items()},
                "exit_code": self.exit_code, "seconds": round(self.seconds, 1),
                "run_dir": self.run_dir, "reused_from": self.reused_from,
                "lab": self.lab, "accel": self.accel, "known_issues": self.known_issues,
                "finished": time.time()}

    @classmethod
    def of(cls, d: Mapping[str, Any]) -> Run:
        return cls(point=str(d["point"]), config_hash=str(d["config_hash"]),
                   artifact=str(d.get("artifact", "")),
                   results={t: Observed.of(r) for t, r in d["results"].items()},
                   exit_code=int(d.get("exit_code", 0)), seconds=float(d.get("seconds", 0.0)),
                   run_dir=str(d.get("run_dir", "")), id=str(d["id"]),
                   reused_from=str(d.get("reused_from", "")), lab=str(d.get("lab", "")),
                   accel=str(d.get("accel", "")), known_issues=str(d.get("known_issues", "")))


@dataclass(frozen=True)
class Conditions:
    """What a run's verdicts depend on beside the commit and the config: the lab's own
    code (lab.version.code_digest), the accelerator its guests ran on, and the known
    issues applied (a digest of the list).  A run is reused only under the same ones."""

    lab: str
    accel: str | None  # None: "auto" before any probe answered (known after the first run)
    known_issues: str

    def admits(self, run: Run, *, own: bool = False) -> bool:
        """Whether ``run`` was made under these conditions.  A bisection's ``own`` runs
        (its journal, on resume) were made with its --accel: while "auto" is not known
        yet, they are taken; another bisection's never are."""
        same_accel = run.accel == self.accel if self.accel is not None else own
        return same_accel and run.lab == self.lab and run.known_issues == self.known_issues

    def to_dict(self) -> dict[str, Any]:
        return {"lab": self.lab, "accel": self.accel, "known_issues": self.known_issues}


@dataclass(frozen=True)
class Build:
    """A commit's build (or a version's fetch)."""

    point: str
    ok: bool
    artifact: str = ""
    spec: str = ""
    seconds: float = 0.0
    error: str = ""
    log: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "build", "point": self.point, "ok": self.ok, "artifact": self.artifact,
                "spec": self.spec, "seconds": round(self.seconds, 1), "error": self.error,
                "log": self.log}

    @classmethod
    def of(cls, d: Mapping[str, Any]) -> Build:
        return cls(point=str(d["point"]), ok=bool(d["ok"]), artifact=str(d.get("artifact", "")),
                   spec=str(d.get("spec", "")), seconds=float(d.get("seconds", 0.0)),
                   error=str(d.get("error", "")), log=str(d.get("log", "")))


def guest_of(start: Mapping[str, Any]) -> GuestOptions:
    """The guest options a bisection's runs have, from its start line (a journal from
    before they were kept: the defaults)."""
    data = start.get("guest")
    return GuestOptions.from_dict(data) if isinstance(data, dict) else GuestOptions()


class Journal:
    """The state directory of one bisection."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.path = state / JOURNAL

    def exists(self) -> bool:
        return self.path.is_file() and self.start() is not None

    def start(self) -> dict[str, Any] | None:
        return next((d for d in read_lines(self.path) if d.get("kind") == "start"), None)

    def check_same(self, start: Mapping[str, Any]) -> None:
        """UserError when the directory holds another bisection than ``start``."""
        mine = self.start()
        if mine is None:
            return
        pinned, now = mine.get("exec_sha256"), start.get("exec_sha256")
        if pinned and now and pinned != now:
            raise UserError(f"{start['exec']['program']} changed since the bisection in "
                            f"{self.state} began (SHA-256 {pinned[:16]}… then, {now[:16]}… "
                            "now): its runs tested the program it began with; restore that "
                            "one, or bisect the new one with another --state")
        differ = [k for k in IDENTITY if mine.get(k) != start.get(k)]
        if differ:
            what = ", ".join(f"{k} {mine.get(k)!r}" for k in differ)
            raise UserError(f"{self.state} holds another bisection ({what}); "
                            f"resume it with --resume {self.state} or give another --state")

    def append(self, obj: Mapping[str, Any]) -> None:
        append_line(self.path, obj)

    def runs(self) -> list[Run]:
        return [Run.of(d) for d in read_lines(self.path) if d.get("kind") == "run"]

    def builds(self) -> list[Build]:
        return [Build.of(d) for d in read_lines(self.path) if d.get("kind") == "build"]

    def lines(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in read_lines(self.path) if d.get("kind") == kind]


class RunStore:
    """Runs of every bisection under one cache, for reuse by later ones."""

    def __init__(self, cache: Path) -> None:
        self.path = cache / "bisect" / "runs.jsonl"

    def add(self, run: Run, *, state: Path) -> None:
        append_line(self.path, {**run.to_dict(), "state": str(state)})

    def runs_at(self, point: str, config_hash: str, tests: tuple[str, ...], *,
                conditions: Conditions) -> list[Run]:
        """Earlier runs at ``point`` with this config, made under ``conditions``, that
        recorded every one of ``tests``."""
        found = []
        for d in read_lines(self.path):
            if d.get("point") != point or d.get("config_hash") != config_hash:
                continue
            run = Run.of(d)
            if conditions.admits(run) and all(t in run.results for t in tests):
                found.append(dataclasses.replace(run, reused_from=str(d.get("state", ""))))
        return found
