"""The nightly workflow does what it says: read, and its report job's steps run here.

GitHub cannot be reached from here, so the workflow is read (each defect the issue found
pinned by what the file must say) and the report job is run step by step on this machine:
its `run:` scripts in bash as Actions runs them, its `if:` conditions evaluated, the
artifacts directories, and `gh` a script that serves earlier nights from directories.
The shard, merge, report and compare lines run for real in tests/test_matrix_real.py;
`nox -s lint` checks the file against GitHub's schema.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from records import rec

from lab.results.matrixfile import Matrix, write
from lab.results.merge import merge
from lab.results.record import Record
from lab.run.cells import matrix as cells_of
from lab.run.shard import parse_shard

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github" / "workflows" / "nightly.yml"
SCRIPTS = REPO / ".github" / "scripts"
TEXT = WORKFLOW.read_text()
FLOW: dict[Any, Any] = yaml.safe_load(TEXT)
JOBS: dict[str, dict[str, Any]] = FLOW["jobs"]


def steps(job: str) -> list[dict[str, Any]]:
    return list(JOBS[job]["steps"])


def uses(step: dict[str, Any], action: str) -> bool:
    return str(step.get("uses", "")).startswith(action + "@")


def lab_matrix() -> list[str]:
    return shlex.split(FLOW["env"]["LAB_MATRIX"])


def cells() -> list[str]:
    args = lab_matrix()
    kernels = [args[i + 1] for i, a in enumerate(args) if a == "--kernel"]
    variants = [args[i + 1] for i, a in enumerate(args) if a == "--variant"]
    return [c.label for c in cells_of(kernels, variants)]


def test_scheduled_matrix() -> None:
    assert re.search(r"^on:\n  schedule:\n    - cron:", TEXT, re.M)
    for kernel in ("debian:6.1", "debian:6.12", "debian:7.2", "debian:7.3", "debian-src:7.3"):
        assert f"--kernel {kernel}" in FLOW["env"]["LAB_MATRIX"]
    assert "--variant base --variant debug" in FLOW["env"]["LAB_MATRIX"]
    assert "--privileged" in JOBS["shard"]["container"]["options"]  # /dev/kvm when there


def test_zstd_is_on_path_before_a_cache_is_restored() -> None:
    # actions/cache compresses with zstd when it is on PATH (gzip otherwise) and an entry
    # restores only with the method that saved it: a container job must install zstd before
    # its first cache step, or the restore never hits what the save wrote.
    cached = False
    for name, job in JOBS.items():
        for n, step in enumerate(job["steps"]):
            if uses(step, "actions/cache") or uses(step, "actions/cache/restore"):
                cached = True
                if "container" in job:
                    before = " ".join(str(s.get("run", "")) for s in job["steps"][:n])
                    assert re.search(r"apt-get install [^\n]*\bzstd\b", before), (name, n)
    assert cached


def test_each_kernel_is_built_once_and_handed_to_its_shard() -> None:
    build = steps("kernels")
    fetch = [s["run"] for s in build if "nox -s fetch" in str(s.get("run", ""))]
    assert fetch == ["/opt/nox/bin/nox -s fetch -- $LAB_MATRIX --shard "
                     "${{ matrix.shard }}/${{ strategy.job-total }}:cell"]
    up = [s for s in build if uses(s, "actions/upload-artifact")]
    assert [s["with"]["name"] for s in up] == ["kernels-${{ matrix.shard }}"]
    down = [s for s in steps("shard") if uses(s, "actions/download-artifact")]
    assert [s["with"]["name"] for s in down] == ["kernels-${{ matrix.shard }}"]
    # The shards take the kernels from the artifact, not from a cache of their own.
    assert not [s for s in steps("shard") if "actions/cache" in str(s.get("uses", ""))]
    assert JOBS["shard"]["needs"] == "kernels"
    assert (JOBS["kernels"]["strategy"]["matrix"]["shard"]
            == JOBS["shard"]["strategy"]["matrix"]["shard"])
    # The tar keeps modes and symlinks (an artifact does not), and holds the entries only.
    assert any("tar -C /github/home/.cache/kernel-lab -cf kernels.tar kernels" in
               str(s.get("run", "")) for s in build)


def test_shards_split_by_cell_one_cell_each() -> None:
    labels = cells()
    shards = JOBS["shard"]["strategy"]["matrix"]["shard"]
    assert shards == list(range(1, len(labels) + 1)), (shards, labels)
    (run,) = [s["run"] for s in steps("shard") if "nox -s lab" in str(s.get("run", ""))]
    assert "--shard ${{ matrix.shard }}/${{ strategy.job-total }}:cell" in run
    for i in shards:
        shard = parse_shard(f"{i}/{len(shards)}:cell")
        assert [c for c in labels if shard.takes_cell(c, cells=labels)] == [labels[i - 1]]


def test_ccache_is_cached_and_old_entries_are_pruned(tmp_path: Path) -> None:
    (cache,) = [s for s in steps("kernels") if uses(s, "actions/cache")]
    assert "ccache" in cache["with"]["path"]
    assert JOBS["kernels"]["env"]["CCACHE_DIR"] == cache["with"]["path"]
    assert cache["with"]["key"].startswith("ccache-${{ matrix.shard }}-")
    assert cache["with"]["key"].endswith("${{ github.run_id }}")
    assert "ccache-${{ matrix.shard }}-\n" in cache["with"]["restore-keys"]
    assert FLOW["permissions"]["actions"] == "write"  # gh cache delete
    assert [s["run"] for s in steps("prune") if "run" in s] == [
        "bash .github/scripts/prune-caches.sh"]
    # Newest first, as gh lists them: each cell keeps its newest entry.
    listing = [{"id": 9, "key": "ccache-5-aaa-900"}, {"id": 8, "key": "ccache-6-aaa-900"},
               {"id": 7, "key": "ccache-5-aaa-800"}, {"id": 6, "key": "ccache-5-bbb-700"},
               {"id": 5, "key": "ccache-6-aaa-800"}]
    gh = FakeGh(tmp_path, runs=[], artifacts={}, caches=listing)
    res = subprocess.run(["bash", str(SCRIPTS / "prune-caches.sh")], capture_output=True,
                         text=True, env=gh.env(), timeout=60)
    assert res.returncode == 0, res.stderr
    assert gh.deleted() == ["7", "6", "5"]


def test_the_report_job_names_its_known_issues() -> None:
    # `pip install .` gives a wheel, whose own list is a template: every command that reads
    # known issues is given the checkout's list.
    assert any(s.get("run") == "python -m pip install ." for s in steps("report"))
    lines = [ln.strip() for s in steps("report") for ln in str(s.get("run", "")).splitlines()
             if re.match(r"\s*(lab (merge|report|compare)|python -m lab.results.nightly)\b",
                         ln)]
    assert len(lines) == 5, lines
    assert all("--known-issues known-issues.toml" in ln for ln in lines), lines
    assert (REPO / "known-issues.toml").is_file()


def test_reruns_overwrite_and_every_job_is_bounded() -> None:
    uploads = [s for job in JOBS for s in steps(job) if uses(s, "actions/upload-artifact")]
    assert len(uploads) == 3 and all(s["with"].get("overwrite") is True for s in uploads)
    assert FLOW["concurrency"]["group"].startswith("nightly-")
    assert FLOW["concurrency"]["cancel-in-progress"] is False
    assert all(isinstance(job.get("timeout-minutes"), int) for job in JOBS.values()), \
        {n: j.get("timeout-minutes") for n, j in JOBS.items()}


def test_a_failed_build_cancels_nothing() -> None:
    for name, job in JOBS.items():
        if "strategy" in job:
            assert job["strategy"]["fail-fast"] is False, name
    for name in ("shard", "report", "prune"):
        assert JOBS[name]["if"] == "${{ !cancelled() }}", name
    (down,) = [s for s in steps("shard") if uses(s, "actions/download-artifact")]
    assert down["continue-on-error"] is True and down["id"] == "kernel"
    (gate,) = [s for s in steps("shard") if s.get("if") == "steps.kernel.outcome != 'success'"]
    assert "::error" in gate["run"] and "MISS" in gate["run"]


def test_a_cancelled_night_uploads_nothing_as_merged() -> None:
    (up,) = [s for s in steps("report") if uses(s, "actions/upload-artifact")]
    assert up["with"]["name"] == "nightly-merged"
    assert up["if"] == "${{ !cancelled() && hashFiles('merged/results.jsonl') != '' }}"
    assert "always()" not in TEXT


# -- the report job, run here ----------------------------------------------------------------


class FakeGh:
    """`gh` for the scripts: `run list` from ``runs``, `run download ID --name N --dir D`
    copies ``artifacts[(ID, N)]``, `cache list` / `cache delete` over ``caches``."""

    def __init__(self, root: Path, *, runs: list[dict[str, Any]] | None,
                 artifacts: dict[tuple[int, str], Path],
                 caches: list[dict[str, Any]]) -> None:
        self.bin = root / "gh-bin"
        self.bin.mkdir(exist_ok=True)
        self.log = root / "gh.log"
        data = root / "gh.json"
        data.write_text(json.dumps({
            "runs": runs, "caches": caches,
            "artifacts": {f"{i}/{n}": str(p) for (i, n), p in artifacts.items()}}))
        (self.bin / "gh").write_text(f"""#!{sys.executable}
import json, shutil, subprocess, sys
args = sys.argv[1:]
open({str(self.log)!r}, "a").write(" ".join(args) + "\\n")
data = json.load(open({str(data)!r}))
def opt(name):
    return args[args.index(name) + 1]
def out(items):
    text = json.dumps(items)
    if "--jq" in args:
        text = subprocess.run(["jq", "-r", opt("--jq")], input=text, capture_output=True,
                              text=True, check=True).stdout
    print(text, end="")
if args[:2] == ["run", "list"]:
    if data["runs"] is None:
        sys.exit("HTTP 502: Bad Gateway (https://api.github.com/graphql)")
    out(data["runs"])
elif args[:2] == ["run", "download"]:
    src = data["artifacts"].get(args[2] + "/" + opt("--name"))
    if src is None:
        print("no valid artifacts found to download", file=sys.stderr)
        sys.exit(1)
    shutil.copytree(src, opt("--dir"), dirs_exist_ok=True)
elif args[:2] == ["cache", "list"]:
    out(data["caches"])
elif args[:2] == ["cache", "delete"]:
    pass
else:
    sys.exit("fake gh: " + " ".join(args))
""")
        (self.bin / "gh").chmod(0o755)

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "PATH": f"{self.bin}:{Path(sys.executable).parent}:"
                f"{os.environ['PATH']}", "GITHUB_RUN_ID": "300", "GITHUB_REF_NAME": "main",
                "GH_TOKEN": "x", "GH_REPO": "owner/kernel-lab", **extra}

    def deleted(self) -> list[str]:
        return [ln.split()[2] for ln in self.log.read_text().splitlines()
                if ln.startswith("cache delete")]


CELLS = [{"label": "debian:7.2", "spec": "debian:7.2", "variant": None},
         {"label": "debian:6.1", "spec": "debian:6.1", "variant": None}]


def all_tests(verdicts: dict[str, str] | None = None) -> list[Record]:
    verdicts = verdicts or {}
    return [rec(f"test_{n}", verdicts.get(f"test_{n}[{cell}]", "PASS"), cell)
            for n in range(3) for cell in ("debian:7.2", "debian:6.1")]


def shard_dir(root: Path, index: int, records: list[Record]) -> Path:
    """A shard's run directory, split by cell as the nightly's: shard 1 debian:7.2, 2 6.1."""
    d = root / f"20261207-0217-debian-shard{index}of2"
    d.mkdir(parents=True)
    mine = [r for r in records if r.cell == CELLS[index - 1]["label"]]
    (d / "results.jsonl").write_text("".join(json.dumps(asdict(r)) + "\n" for r in mine))
    (d / "command.txt").write_text(f"lab run --shard {index}/2:cell\n")
    expected = [(r.cell, r.test) for r in records]
    write(d, Matrix(cells=CELLS, suite=["scenarios/aio"], expected=expected,
                    assigned=[(r.cell, r.test) for r in mine], shard=f"{index}/2:cell"))
    return d


@dataclass
class Job:
    """What running a job here left: its outputs, uploads, the summary and its log."""

    cwd: Path
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)
    uploads: dict[str, Path] = field(default_factory=dict)
    log: str = ""
    failed: bool = False

    @property
    def summary(self) -> str:
        path = self.cwd / "summary.md"
        return path.read_text() if path.is_file() else ""


class _Steps:
    def __init__(self, job: Job) -> None:
        self.job = job

    def __getattr__(self, step: str) -> Any:
        outputs = self.job.outputs.get(step, {})
        outcome = self.job.outcomes.get(step, "")
        return type("Step", (), {"outputs": type("O", (), {
            "__getattr__": lambda _, k: outputs.get(k, "")})(), "outcome": outcome})()


GITHUB = {"token": "x", "repository": "owner/kernel-lab", "server_url": "https://github.com",
          "run_id": "300"}


def expression(text: str, job: Job) -> Any:
    """An Actions expression (the subset the report job uses), evaluated."""
    text = text.strip()
    if text.startswith("${{") and text.endswith("}}"):
        text = text[3:-2]
    py = re.sub(r"!(?!=)", " not ", text.replace("&&", " and ").replace("||", " or "))
    names = {"cancelled": lambda: False, "always": lambda: True,
             "success": lambda: not job.failed, "failure": lambda: job.failed,
             "hashFiles": lambda p: "h" if (job.cwd / p).exists() else "",
             "steps": _Steps(job), "github": type("G", (), GITHUB)}
    return eval(py, {"__builtins__": {}}, names)  # the workflow's own text, no builtins


def substitute(text: str, job: Job) -> str:
    return re.sub(r"\$\{\{(.+?)\}\}", lambda m: str(expression(m.group(1), job)), text)


def run_job(name: str, cwd: Path, *, downloads: dict[str, list[Path]], env: dict[str, str],
            skip_runs: tuple[str, ...] = ("python -m pip install .",)) -> Job:
    """Run job ``name``'s steps in ``cwd`` as Actions would (``downloads``: the artifacts a
    download-artifact step's pattern or name finds; ``skip_runs``: steps the test
    environment has done already, as installing the lab)."""
    job = Job(cwd=cwd)
    for n, step in enumerate(steps(name)):
        sid = step.get("id", f"step{n}")
        if not expression(step.get("if", "success()"), job):
            continue
        if "uses" in step:
            w = step.get("with", {})
            if uses(step, "actions/download-artifact"):
                for art in downloads.get(w.get("pattern") or w.get("name"), []):
                    shutil.copytree(art, cwd / w["path"] / art.name)
            elif uses(step, "actions/upload-artifact"):
                job.uploads[w["name"]] = cwd / w["path"]
            job.outcomes[sid] = "success"
            continue
        if step["run"] in skip_runs:
            continue
        out = cwd / f"output-{n}"
        out.write_text("")
        step_env = {**env, **{k: substitute(str(v), job) for k, v in
                              step.get("env", {}).items()},
                    "GITHUB_OUTPUT": str(out), "GITHUB_STEP_SUMMARY": str(cwd / "summary.md")}
        script = cwd / f"step-{n}.sh"
        script.write_text(substitute(step["run"], job))
        res = subprocess.run(["bash", "-e", str(script)], cwd=cwd, env=step_env,
                             capture_output=True, text=True, timeout=600)
        job.log += f"--- {step.get('name', sid)}: {res.returncode}\n{res.stdout}{res.stderr}"
        job.outputs[sid] = dict(ln.split("=", 1) for ln in out.read_text().splitlines()
                                if "=" in ln)
        job.outcomes[sid] = "success" if res.returncode == 0 else "failure"
        if res.returncode != 0 and not step.get("continue-on-error"):
            job.failed = True
    return job


@pytest.fixture
def nights(tmp_path: Path) -> tuple[FakeGh, Path]:
    """Earlier nights: run 300 is this one, 299 was cancelled (no merged run), 298 left a
    download without one, 297 the baseline (every test PASS), 296 older still."""
    base = merge([shard_dir(tmp_path / "b", i, all_tests()) for i in (1, 2)],
                 tmp_path / "night-297", command="lab merge").path
    torn = tmp_path / "night-298"
    torn.mkdir()
    (torn / "phases.jsonl").write_text("")
    older = merge([shard_dir(tmp_path / "o", i, all_tests({"test_2[debian:7.2]": "FAIL"}))
                   for i in (1, 2)], tmp_path / "night-296", command="lab merge").path
    runs = [{"databaseId": 301, "status": "in_progress"}, {"databaseId": 300,
            "status": "in_progress"}, *({"databaseId": i, "status": "completed"}
                                        for i in (299, 298, 297, 296))]
    gh = FakeGh(tmp_path, runs=runs, caches=[], artifacts={
        (298, "nightly-merged"): torn, (297, "nightly-merged"): base,
        (296, "nightly-merged"): older})
    return gh, base


def report_job(tmp_path: Path, gh: FakeGh, shards: list[Path]) -> Job:
    cwd = tmp_path / "job"
    cwd.mkdir()
    shutil.copytree(REPO / ".github", cwd / ".github")
    # The checkout's list, with an expired entry that the report must show: the file given.
    (cwd / "known-issues.toml").write_text(
        '[[issue]]\ntest = "scenarios/aio/t.py::test_1*"\ncell = "debian:6.1"\n'
        'verdicts = ["FAIL"]\nwildcard_reason = "every test_1 variant fails the same way"\n'
        'url = "https://bugs.example/expired-1"\nexpires = 2026-01-01\n')
    arts = []
    for n, d in enumerate(shards, 1):  # an artifact shard-N holds its run directory
        art = tmp_path / "artifacts" / f"shard-{n}"
        shutil.copytree(d, art / d.name)
        arts.append(art)
    return run_job("report", cwd, downloads={"shard-*": arts}, env=gh.env())


def test_a_night_with_a_regression_and_a_lost_cell_fails_and_says_so(
        tmp_path: Path, nights: tuple[FakeGh, Path]) -> None:
    gh, base = nights
    tonight = all_tests({"test_0[debian:7.2]": "FAIL"})
    # Shard 2 (debian:6.1) never uploaded: its kernel did not build.
    job = report_job(tmp_path, gh, [shard_dir(tmp_path / "s", 1, tonight)])
    assert job.failed, job.log
    # The baseline: the newest earlier night that left a merged run, walking back.
    assert "the baseline is run 297" in job.log and "run 299 left no merged run" in job.log
    assert "run 298 left no merged run" in job.log
    assert (job.cwd / "previous" / "results.jsonl").read_bytes() == \
        (base / "results.jsonl").read_bytes()
    # A FAIL beside the MISS: a test failed, whatever else happened (lab.errors)
    assert job.outputs["merge"]["status"] == "1"
    assert job.outputs["compare"]["status"] == "1"  # a regression
    assert job.uploads == {"nightly-merged": job.cwd / "merged/"}
    s = job.summary
    assert "`lab merge` exited 1: a test failed" in s
    assert "| cell | FAIL | MISS | PASS |" in s, s  # the verdicts' order, worst first
    assert "| debian:7.2 | 1 | 0 | 2 |" in s and "| debian:6.1 | 0 | 3 | 0 |" in s, s
    assert "### Regressions: 1" in s and "`scenarios/aio/t.py::test_0` on `debian:7.2`: " \
        "PASS → FAIL" in s, s
    assert "  - reproduce: `lab run --kernel debian:7.2" in s, s
    assert "### Lost checks: 3" in s and "on `debian:6.1`: PASS → MISS" in s, s
    assert "report.html: https://github.com/owner/kernel-lab/actions/runs/300#artifacts: " \
        "artifact `nightly-merged`, `merged/report.html`" in s
    assert s.rstrip().endswith("**The night failed.**")
    errors = [ln for ln in job.log.splitlines() if ln.startswith("::error ")]
    assert any(ln.startswith("::error title=lab merge::lab merge exited 1") for ln in errors)
    assert any(ln.startswith("::error title=regression%3A debian%3A7.2::scenarios/aio/t.py::"
                             "test_0: PASS -> FAIL; reproduce: lab run") for ln in errors), errors
    assert "::error title=lost checks%3A debian%3A6.1::3 checks lost (3 PASS -> MISS), e.g. " \
        "scenarios/aio/t.py::test_0; see the step summary" in errors, errors
    assert len(errors) <= 10  # what GitHub shows of one step
    assert any(ln.startswith("::error title=lab compare::") for ln in errors)
    # The checkout's known issues were read: the expired entry is in the report.
    assert "https://bugs.example/expired-1" in (job.cwd / "merged/report.html").read_text()


def test_a_clean_night_passes(tmp_path: Path, nights: tuple[FakeGh, Path]) -> None:
    gh, _ = nights
    tonight = all_tests()
    job = report_job(tmp_path, gh, [shard_dir(tmp_path / "s", i, tonight) for i in (1, 2)])
    assert not job.failed, job.log
    assert job.outputs["merge"]["status"] == "0" and job.outputs["compare"]["status"] == "0"
    assert "### Regressions: 0" in job.summary and "### Lost checks: 0" in job.summary
    assert job.summary.rstrip().endswith("**The night passed.**")
    assert "::error" not in job.log


def test_a_night_with_nothing_to_merge_fails_and_uploads_no_merged_run(
        tmp_path: Path, nights: tuple[FakeGh, Path]) -> None:
    gh, _ = nights
    job = report_job(tmp_path, gh, [])
    assert job.failed and job.outputs["merge"]["status"] == "2", job.log
    assert "compare" not in job.outcomes and job.uploads == {}
    assert "`lab merge` exited 2: nothing was merged" in job.summary


def test_no_earlier_night_left_a_merged_run(tmp_path: Path) -> None:
    gh = FakeGh(tmp_path, runs=[{"databaseId": 5, "status": "completed"}], artifacts={},
                caches=[])
    res = subprocess.run(["bash", str(SCRIPTS / "previous-night.sh"), "previous"],
                         cwd=tmp_path, capture_output=True, text=True, env=gh.env(),
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert "no earlier night left a merged run" in res.stdout
    assert not (tmp_path / "previous").exists() and not (tmp_path / "previous.part").exists()


def test_a_night_without_its_baseline_is_still_merged_and_reported(tmp_path: Path) -> None:
    gh = FakeGh(tmp_path, runs=None, artifacts={}, caches=[])  # GitHub's API fails
    job = report_job(tmp_path, gh, [shard_dir(tmp_path / "s", i, all_tests()) for i in (1, 2)])
    assert "Bad Gateway" in job.log and not job.failed, job.log
    assert job.outputs["merge"]["status"] == "0" and (job.cwd / "merged/report.html").is_file()
    assert "nothing to compare with" in job.summary


def test_annotations_stay_within_what_github_shows() -> None:
    from lab.results.nightly import _annotated

    def entry(n: int, cell: str, after: str) -> dict[str, Any]:
        return {"cell": cell, "scenario": f"t.py::test_{n}", "before": "PASS", "after": after,
                "reproducer": f"lab run -- t.py::test_{n}"}

    lines = _annotated([entry(n, "debian:7.2", "FAIL") for n in range(8)],
                       [entry(n, c, "MISS") for n in range(150) for c in ("debian:6.1", "x")])
    assert len(lines) == 5 + 1 + 2, lines
    assert lines[5] == "::error title=regressions::3 more regressions: see the step summary"
    assert lines[6].startswith("::error title=lost checks%3A debian%3A6.1::150 checks lost")


@pytest.mark.parametrize("merge_status, compare_status, fails", [
    ("0", "0", False), ("0", "", False), ("1", "0", True), ("3", "0", True), ("4", "", True),
    ("2", "", True), ("", "", True), ("0", "1", True), ("0", "2", True)])
def test_the_night_fails_on_any_merge_or_compare_failure(
        tmp_path: Path, merge_status: str, compare_status: str, fails: bool) -> None:
    from lab.results.nightly import main

    summary = tmp_path / "summary.md"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GITHUB_STEP_SUMMARY", str(summary))
        rc = main([str(tmp_path / "merged"), "--merge-status", merge_status,
                   "--compare-status", compare_status,
                   "--known-issues", str(REPO / "known-issues.toml")])
    assert rc == (1 if fails else 0)
    assert summary.read_text().rstrip().endswith(
        f"**The night {'failed' if fails else 'passed'}.**")
