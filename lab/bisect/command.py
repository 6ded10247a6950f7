"""`lab bisect`: validate, set up the ports and the journal, bisect, write bisect.json.

Everything cheap is checked before anything is built or written: the options,
the revisions (in the user's repository, read only), that good is an ancestor
of bad and both are kernel trees, that ``-k`` selects something, that the state
directory holds no other bisection.  A mistake there is one line and exit 2.

Exit status: 0 a culprit was found (confidence at or above the threshold);
4 inconclusive (only skipped commits left, or confidence too low); 2 a
mistake in the command, or endpoints that do not behave as claimed (the
verdicts seen are shown and kept in bisect.json); 3 the machinery failed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import atomic
from lab.bisect import coarse, search
from lab.bisect.classify import BadIf
from lab.bisect.decision import THRESHOLD
from lab.bisect.driver import Driver, EndpointError, Plan, Setup
from lab.bisect.journal import FORMAT, JOURNAL, Conditions, Journal, RunStore, guest_of
from lab.bisect.ports import Builder, ExecRun, KernelBuilder, LabRun, Tester, exec_reproducer
from lab.bisect.result import Result, Step
from lab.bisect.search import GitSearch, Next
from lab.bisect.select import selection
from lab.errors import EXIT_INCONCLUSIVE, EXIT_OK, UserError
from lab.inside.exec import parse_timeout, program_of
from lab.kernel import kconfig, worktree
from lab.kernel.worktree import Clone
from lab.options import GuestOptions
from lab.paths import cache_root, default_results_root, in_scenarios
from lab.results import known, report, reproduce
from lab.results.record import new_run_dir
from lab.run.config import RunConfig
from lab.version import code_digest

log = logging.getLogger("lab.bisect")


@dataclass(frozen=True)
class BisectOptions:
    """A bisection's own options, and the run options its runs share with `lab run`
    (lab.run.config: -k, --variant (one), --kconfig-add, --known-issues, --cache,
    --suite and the guest's)."""

    run: RunConfig = field(default_factory=RunConfig)
    repo: Path | None = None
    good: str | None = None
    bad: str | None = None
    runs: str | None = None  # "auto", "N"; None: one run, statistical if the bad end is flaky
    bad_if: str | None = None
    state: Path | None = None
    resume: Path | None = None
    versions: bool = False
    from_version: str | None = None
    to_version: str | None = None
    verify_revert: bool = False
    reuse: bool = True
    # --exec: the user's program and its arguments (instead of -k), and its --timeout.
    exec_: tuple[str, ...] = ()
    timeout: str | None = None

    @property
    def keyword(self) -> str | None:
        return self.run.keyword

    @property
    def variant(self) -> str | None:
        return self.run.variants[0] if self.run.variants else None

    @property
    def suite(self) -> Path:
        return self.run.suite


def parse_runs(text: str | None) -> str | None:
    if text is None or text == "auto":
        return text
    if text.isdigit() and int(text) >= 1:
        return str(int(text))
    raise UserError(f"--runs {text!r}: give a number of runs per commit (1 or more) or auto")


@dataclass(frozen=True)
class Seams:
    """Where tests replace the machinery: the builder, the `lab run` process, the collection.

    Production uses none of them; orchestration tests drive a real git history
    with fakes here (syzkaller's bisect tests do the same with a fake env).
    """

    builder: Builder | None = None
    launch: Callable[[Sequence[str], Path], int] | None = None
    collect: Callable[[Path, str, str], tuple[tuple[str, ...], tuple[str, ...]]] | None = None


def bisect(opts: BisectOptions, *, argv: list[str], seams: Seams | None = None) -> int:
    """Run a bisection (or resume one); returns the exit status."""
    seams = seams or Seams()
    cache = cache_root(opts.run.cache)
    if opts.resume is not None:
        opts = _resumed(opts)
    guest = opts.run.guest
    if opts.run.kconfig_add:
        # One variant string from here on ("base+CONFIG_X=y"): the builds, the runs' cells,
        # the journal's identity and the reproducer all carry the added options.
        if opts.versions:
            raise UserError("--kconfig-add is for kernels the lab builds; --versions bisects "
                            "Debian's prebuilt ones")
        variant = kconfig.compose(kconfig.with_additions(opts.variant,
                                                         opts.run.kconfig_add)).variant
        opts = dataclasses.replace(opts, run=dataclasses.replace(
            opts.run, kconfig_add=(), variants=(variant,)))
    runs = parse_runs(opts.runs)
    bad_if = BadIf.parse(opts.bad_if) if opts.bad_if else None
    target = _exec_target(opts)
    if not opts.keyword and target is None:
        raise UserError("lab bisect needs -k EXPR (the scenarios whose failure is bisected) "
                        "or --exec PROGRAM [ARGS...] (your reproducer)")
    if target is None and not opts.suite.exists():
        raise UserError(f"no scenarios at {opts.suite}; give --suite DIR")
    if opts.versions and opts.variant not in (None, "", "base"):
        raise UserError("--variant is for kernels the lab builds; --versions bisects "
                        "Debian's prebuilt ones")
    if opts.versions and (opts.repo or opts.good or opts.bad):
        raise UserError("--versions walks Debian's kernels: give --from/--to, not "
                        "--repo/--good/--bad")
    composed = kconfig.compose(opts.variant)  # an unknown variant: before anything else
    issues = known.path_for(opts.run.known_issues) if opts.run.known_issues else known.NONE
    known.load(issues)  # a broken list: now, not in every run
    if opts.versions:
        start, points = coarse.validate(opts.from_version, opts.to_version, cache=cache)
    else:
        start, points = _validate_git(opts, cache=cache)
    config_hash = composed.hash if not opts.versions else "prebuilt"
    tests: tuple[str, ...]
    flaky: tuple[str, ...]
    if target is not None:
        # The program's one test; runs are reused only with the same program, arguments
        # and timeout (its pin in the configuration's key).
        tests, flaky = (f"exec::{Path(target['program']).name}",), ()
        key = json.dumps([target["sha256"], target["args"], target["timeout"]])
        config_hash += f"+exec-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    elif seams.collect is not None:
        assert opts.keyword is not None
        tests, flaky = seams.collect(opts.suite.resolve(), opts.keyword, start["spec_example"])
    else:
        assert opts.keyword is not None
        tests, flaky = selection(opts.suite.resolve(), opts.keyword,
                                 spec=start["spec_example"],
                                 log_path=cache / "bisect" / "collect.log",
                                 variant=None if opts.versions else composed.variant)
    start.update({"kind": "start", "format": FORMAT, "keyword": opts.keyword,
                  "variant": composed.variant if not opts.versions else "prebuilt",
                  "suite": str(opts.suite.resolve()), "selected": list(tests),
                  "flaky": list(flaky), "bad_if": opts.bad_if, "runs": runs,
                  "config_hash": config_hash,
                  **({"exec": target, "exec_sha256": target["sha256"]} if target else {}),
                  "guest": guest.to_dict(), "argv": argv,
                  "known_issues": "" if issues == known.NONE else str(issues)})
    state = _state_dir(opts, start)
    journal = Journal(state)
    if journal.exists():
        journal.append({"kind": "resume", "at": time.time(), "runs": runs, "argv": argv})
    else:
        journal.append({**start, "created": time.time()})
    plan = Plan(good=start["good_point"], bad=start["bad_point"], selected=tests,
                config_hash=start["config_hash"], runs=runs, bad_if=bad_if, flaky=flaky,
                state=state, reuse=opts.reuse,
                conditions=conditions(opts.suite.resolve(), issues, cache=cache, guest=guest))
    shared = dataclasses.replace(opts.run, cache=cache, suite=opts.suite.resolve(),
                                 guest=guest, known_issues=issues,
                                 variants=() if opts.versions else opts.run.variants)
    launch: dict[str, Any] = {"launch": seams.launch} if seams.launch else {}
    tester = (LabRun(shared, **launch) if target is None else
              ExecRun(shared, program=[target["program"], *target["args"]],
                      timeout=target["timeout"], **launch))
    if opts.versions:
        setup = coarse.setup(start, plan, points, cache=cache, tester=tester)
    else:
        setup = _setup_git(start, plan, points, cache=cache, variant=opts.variant,
                           tester=tester)
    if seams.builder is not None:
        setup.builder = seams.builder
    print(f"kernel-lab: bisect state {state} (resume with: lab bisect --resume {state})",
          flush=True)
    return _run(setup, journal, store=RunStore(cache), verify_revert=opts.verify_revert,
                started=time.monotonic())


def _exec_target(opts: BisectOptions) -> dict[str, Any] | None:
    """--exec's program as the journal keeps it (path, arguments, timeout, SHA-256), or
    None for -k; a UserError for both, or for a program `lab exec` would refuse."""
    if not opts.exec_:
        if opts.timeout is not None:
            raise UserError("--timeout is for --exec (how long your program may run)")
        return None
    if opts.keyword:
        raise UserError("-k and --exec are exclusive: bisect the scenarios -k selects, or "
                        "your program (--exec), not both")
    program = program_of(["--", *opts.exec_])
    return {"program": str(program.path), "args": list(program.args),
            "timeout": parse_timeout(opts.timeout), "sha256": program.sha256}


def conditions(suite: Path, issues: Path, *, cache: Path, guest: GuestOptions) -> Conditions:
    """The conditions this session's runs are made under, and earlier runs must share."""
    from lab.vm import accel

    listed = hashlib.sha256(issues.read_bytes()).hexdigest()[:16] if issues != known.NONE \
        else "none"
    return Conditions(lab=code_digest(*([] if in_scenarios(suite) else [suite])),
                      accel=accel.expected(cache, guest.accel), known_issues=listed)


def _resumed(opts: BisectOptions) -> BisectOptions:
    assert opts.resume is not None
    state = opts.resume.expanduser().resolve()
    start = Journal(state).start()
    if start is None:
        raise UserError(f"--resume {state}: no bisection journal there")
    # The endpoints as they were resolved: a branch that moved since is not another start;
    # the guests as they were (an older journal without them: as the command line says).
    git = start["mode"] == "git"
    guest = GuestOptions.from_dict(start["guest"]) if "guest" in start else opts.run.guest
    variant = None if start["variant"] in ("base", "prebuilt") else start["variant"]
    target = start.get("exec")
    run = RunConfig(keyword=start["keyword"], variants=(variant,) if variant else (),
                    cache=opts.run.cache, suite=Path(start["suite"]), guest=guest,
                    known_issues=Path(start["known_issues"]) if start.get("known_issues")
                    else None)
    return BisectOptions(
        run=run, repo=Path(start["repo"]) if git else None,
        good=start["good_point"] if git else None, bad=start["bad_point"] if git else None,
        runs=opts.runs if opts.runs is not None else start.get("runs"),
        bad_if=start.get("bad_if"), state=state, versions=not git,
        from_version=None if git else start["good_point"],
        to_version=None if git else start["bad_point"],
        verify_revert=opts.verify_revert, reuse=opts.reuse,
        # The program as it began: a changed one is refused (Journal.check_same).
        exec_=(target["program"], *target["args"]) if target else (),
        timeout=str(target["timeout"]) if target else None)


def _validate_git(opts: BisectOptions, *, cache: Path) -> tuple[dict[str, Any], list[str]]:
    if opts.repo is None or not opts.good or not opts.bad:
        raise UserError("lab bisect needs --repo PATH --good REV --bad REV (or --versions, "
                        "or --resume DIR)")
    log_path = cache / "bisect" / "git.log"
    top = worktree.repo_top(opts.repo.expanduser(), log_path=log_path)
    commits = []
    for which, rev in (("good", opts.good), ("bad", opts.bad)):
        commit = worktree.rev_commit(top, rev, log_path=log_path)
        if commit is None:
            raise UserError(f"--{which} {rev}: no such revision in {top}")
        commits.append(commit)
    good, bad = commits
    if good == bad:
        raise UserError(f"--good {opts.good} and --bad {opts.bad} are the same commit "
                        f"({good[:12]}): nothing to bisect")
    if not _is_ancestor(top, good, bad, log_path=log_path):
        raise UserError(f"--good {opts.good} ({good[:12]}) is not an ancestor of --bad "
                        f"{opts.bad} ({bad[:12]}); give a good commit the bad one descends from")
    for which, commit in (("good", good), ("bad", bad)):
        lacking = _missing_files(top, commit, log_path=log_path)
        if lacking:
            raise UserError(f"{top} is not a Linux kernel tree at --{which} {commit[:12]} "
                            f"(no {', '.join(lacking)})")
    start = {"mode": "git", "repo": str(top), "good": opts.good, "bad": opts.bad,
             "good_point": good, "bad_point": bad, "spec_example": f"git:{top}@{bad}"}
    return start, [good, bad]


def _git_read(top: Path, *args: str, log_path: Path, check: bool = True) -> tuple[int, str]:
    from lab import proc

    res = proc.run(["git", "-C", str(top), *args], phase="bisect:git", log_path=log_path,
                   timeout=300, check=check, env={"LC_ALL": "C"})
    return res.returncode, res.stdout


def _is_ancestor(top: Path, older: str, newer: str, *, log_path: Path) -> bool:
    rc, _ = _git_read(top, "merge-base", "--is-ancestor", older, newer, log_path=log_path,
                      check=False)
    return rc == 0


def _missing_files(top: Path, commit: str, *, log_path: Path) -> list[str]:
    need = ["Makefile", "Kconfig", "arch/x86/Kconfig", "init/main.c"]
    _, out = _git_read(top, "ls-tree", "--name-only", "-r", "--full-tree", commit, "--", *need,
                       log_path=log_path)
    have = set(out.split())
    return [f for f in need if f not in have]


def _state_dir(opts: BisectOptions, start: dict[str, Any]) -> Path:
    if opts.state is not None:
        state = opts.state.expanduser().resolve()
        why = atomic.cannot_publish(state / JOURNAL)
        if why:
            raise UserError(f"--state {opts.state}: {why}; give a directory you may write to "
                            "(new, or a bisection's to resume)")
        Journal(state).check_same(start)
        return state
    name = Path(str(start.get("repo") or "versions")).name
    return new_run_dir(default_results_root(), f"bisect-{name}")


def _setup_git(start: dict[str, Any], plan: Plan, points: list[str], *, cache: Path,
               variant: str | None, tester: Tester) -> Setup:
    top = Path(start["repo"])
    clone = worktree.clone_for(top, cache=cache)
    subjects: dict[str, str] = {}

    def describe(point: str) -> str:
        if point not in subjects:
            subjects[point] = search.subject(clone, point)
        return f"{point[:12]} {subjects[point]}"

    count = int(clone.git("rev-list", "--count", f"{plan.good}..{plan.bad}").strip())
    builder = KernelBuilder(lambda p: f"git:{top}@{p}", cache=cache, variant=variant)
    return Setup(start=start, plan=plan, search=GitSearch(clone), builder=builder,
                 tester=tester, describe=describe, count=count, clone=clone)


def _run(setup: Setup, journal: Journal, *, store: RunStore, verify_revert: bool,
         started: float) -> int:
    driver = Driver(plan=setup.plan, search=setup.search, builder=setup.builder,
                    tester=setup.tester, journal=journal, store=store,
                    describe=setup.describe, count=setup.count)
    with setup.search.session():
        try:
            nxt = driver.bisect()
        except EndpointError as exc:
            result = Result(kind="endpoints", mode=setup.start["mode"], message=str(exc),
                            steps=[*driver.steps, exc.step], setup=_setup_dict(setup, driver),
                            wall_seconds=time.monotonic() - started)
            _write(journal, result)
            raise UserError(str(exc)) from None
        result = assemble(setup, driver, nxt, verify_revert=verify_revert)
    result.wall_seconds = time.monotonic() - started
    _write(journal, result)
    for line in result.lines():
        print(line)
    if result.kind == "culprit" and result.first_bad:
        if result.mode == "git":
            print(f"first bad commit: {result.first_bad}", flush=True)
        else:
            print(f"first bad version: {result.first_bad}", flush=True)
    return EXIT_OK if result.kind == "culprit" else EXIT_INCONCLUSIVE


def _write(journal: Journal, result: Result) -> None:
    data = result.to_dict()
    journal.append({"kind": "result", "result": result.kind, "first_bad": result.first_bad,
                    "confidence": result.confidence})
    atomic.write_text(journal.state / report.BISECT_FILE, json.dumps(data, indent=2) + "\n")
    print(f"kernel-lab: {journal.state / report.BISECT_FILE}", flush=True)
    print(f"kernel-lab: report {report.write_bisection(journal.state)}", flush=True)


def _setup_dict(setup: Setup, driver: Driver) -> dict[str, Any]:
    keep = ("mode", "repo", "good", "bad", "good_point", "bad_point", "keyword", "variant",
            "suite", "selected", "flaky", "runs", "config_hash")
    return {**{k: setup.start.get(k) for k in keep}, "policy": driver.policy_dict(),
            "state": str(setup.plan.state)}


def assemble(setup: Setup, driver: Driver, nxt: Next, *, verify_revert: bool) -> Result:
    """The Result of a finished search: culprit details, warnings, checks, reproducer."""
    mode = setup.start["mode"]
    steps = driver.steps
    confidence = driver.confidence()
    base = {"mode": mode, "steps": steps, "setup": _setup_dict(setup, driver)}
    if nxt.only_skipped:
        names = [setup.describe(p) for p in nxt.only_skipped]
        return Result(kind="range", message=f"only skipped points are left: the first bad "
                      f"one is one of {len(names)}", candidates=names, confidence=confidence,
                      warnings=[f"only skipped points remain; the first bad one is one of: "
                                f"{', '.join(n.split()[0] for n in names)}"], **base)
    first = nxt.first_bad
    assert first is not None
    if mode == "versions":
        return coarse.result(setup, driver, first, confidence, base)
    assert setup.clone is not None
    clone = setup.clone
    warnings: list[str] = []
    parents = search.parents(clone, first)
    if len(parents) > 1:
        warnings.append(f"{first[:12]} is a merge commit ({len(parents)} parents): the change "
                        "may come from either side; bisect the merged branch to go further")
    same = _same_image_as_parent(driver, first, parents)
    if same:
        warnings.append(same)
    skipped = [s.name for s in steps if s.verdict == "skip"]
    if skipped:
        warnings.append(f"skipped on the way: {'; '.join(skipped)}")
    foreign = sorted({f for s in steps for f in s.foreign})
    if foreign:
        warnings.append(f"unrelated splats seen (those runs were skipped): {'; '.join(foreign)}")
    variant = setup.start.get("variant")
    kernel = f"git:{setup.start['repo']}@{first}"  # the full commit id
    variants = [str(variant)] if variant and variant != "base" else []
    repro = reproduce.Command(
        kernels=[kernel], variants=variants,
        guest=guest_of(setup.start), keyword=str(setup.start["keyword"]),
        known_issues=str(setup.start.get("known_issues") or known.NONE)).text()
    if setup.start.get("exec"):
        repro = exec_reproducer(setup.start["exec"], kernel=kernel, variants=variants,
                                guest=guest_of(setup.start))
    revert = _revert_check(clone, driver, first, setup.plan.bad) if verify_revert else None
    if revert is not None and not revert["ok"]:
        warnings.append(f"revert check: {revert['summary']}")
    subject = search.subject(clone, first)
    kind = "culprit" if confidence >= THRESHOLD else "inconclusive"
    message = (f"first bad commit {first[:12]} ({subject})" if kind == "culprit" else
               f"inconclusive: {first[:12]} would be first bad, but the confidence "
               f"{confidence:.2f} is below {THRESHOLD}")
    return Result(kind=kind, message=message, first_bad=first, subject=subject,
                  confidence=confidence, warnings=warnings,
                  diffstat=search.diffstat(clone, first), reproducer=repro,
                  revert=revert, **base)


def _same_image_as_parent(driver: Driver, first: str, parents: list[str]) -> str:
    """A warning when the culprit builds the very image its parent does, else ""."""
    mine = driver.builds.get(first)
    if mine is None or not mine.ok or not parents:
        return ""
    parent = driver.builds.get(parents[0]) or driver.build(parents[0])
    if parent.ok and parent.artifact == mine.artifact:
        return (f"{first[:12]} builds the same kernel image as its parent {parents[0][:12]} "
                f"(bzImage sha256 {mine.artifact}…): the change does nothing to this config's "
                "kernel, so the result is suspect (a flaky target, or a change outside it)")
    return ""


def _revert_check(clone: Clone, driver: Driver, culprit: str, bad: str) -> dict[str, Any]:
    """Build the bad endpoint with the culprit reverted and show the target passes."""
    reverted = search.revert_onto(clone, culprit, bad)
    if reverted is None:
        return {"ok": False, "commit": None,
                "summary": f"{culprit[:12]} does not revert cleanly on {bad[:12]}"}
    driver.progress(f"bisect: revert check: {bad[:12]} with {culprit[:12]} reverted is "
                    f"{reverted[:12]} (only in the lab's clone)")
    step: Step = driver.evaluate(reverted, role="revert", policy=driver.policy)
    driver.steps.append(step)
    ok = step.verdict == "good"
    return {"ok": ok, "commit": reverted, "verdict": step.verdict,
            "counts": step.to_dict()["counts"],
            "summary": (f"{bad[:12]} with {culprit[:12]} reverted ({reverted[:12]}) is "
                        f"{step.verdict}: " + ("the target passes" if ok else
                                               f"{step.why}"))}
