"""Bad paths and pytest arguments at the front: one line, exit 2, no traceback, nothing written.

Each case runs the real `lab` command (a subprocess, as tests/test_cli.py does) and
checks that it stops before a run directory (or any output) exists.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest
from hostuser import User, normal_user
from records import rec

from lab.results.matrixfile import Matrix, write

REPO = Path(__file__).resolve().parent.parent


def lab(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300,
                          env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "PYTHONPATH": str(REPO),
                               "HOME": str(cwd), **env})


def refused(res: subprocess.CompletedProcess[str], *needles: str) -> str:
    """The one line of a refusal (exit 2, no traceback), which names each of ``needles``."""
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lab: error: "), res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def nothing_written(cwd: Path, before: set[Path]) -> None:
    """No new file or directory under ``cwd`` (no run directory, no output; Python's
    bytecode cache of a suite that was imported aside)."""
    new = {p for p in set(cwd.rglob("*")) - before if "__pycache__" not in p.parts}
    assert not new, sorted(new)


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    (tmp_path / "afile").write_text("not a directory\n")
    (tmp_path / "adir").mkdir()
    return tmp_path


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return lab("run", "--cache", str(cwd / "cache"), *args, cwd=cwd)


@pytest.mark.parametrize("results, needles", [
    ("afile", ["afile is a file, not a directory", "--results DIR"]),
    ("afile/runs", ["afile/runs cannot be made", "is a file"]),
    ("/proc/lab-results", ["/proc is not writable", "--results DIR"]),
])
def test_results_that_cannot_hold_a_run(cwd: Path, results: str, needles: list[str]) -> None:
    before = set(cwd.rglob("*"))
    refused(_run(cwd, "--results", results), *needles)
    nothing_written(cwd, before)


@pytest.fixture(scope="module")
def user() -> User:
    return normal_user()


def test_results_the_user_may_not_write(user: User, tmp_path: Path) -> None:
    """As labuser: a --results directory of root's (the lab's child is the user's, forked:
    the user may not read root's interpreter, see tests/hostuser.py)."""
    from lab.cli import main
    from lab.host import doctor

    home = user.tmp_dir("lab-results-")
    try:
        ro = home / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        if user.switch:
            import os

            os.chown(ro, 0, 0)
        issues = home / "known-issues.toml"
        issues.write_text("")
        argv = ["run", "--cache", str(home / "cache"), "--known-issues", str(issues),
                "--results", str(ro)]

        def call() -> tuple[int, str]:
            out = io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                rc = main(argv)
            return rc, out.getvalue()

        # Whatever the run imports lazily, imported as we are (the user's child cannot).
        doctor.checks(tmp_path / "c")
        main(["run", "--cache", str(tmp_path / "c"), "--known-issues", str(tmp_path / "no")])
        rc, out = user.call(call, cwd=home)
        assert rc == 2, out
        assert "Traceback" not in out
        [line] = [ln for ln in out.splitlines() if ln.startswith("lab: error:")]
        assert f"{ro} is not writable by {user.name}" in line and "--results DIR" in line
        assert list(ro.iterdir()) == [] and not (home / "cache").exists()
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.parametrize("command", [["doctor"], ["kernels"], ["run"], ["fetch", "debian:7.2"]])
def test_a_cache_that_is_a_file(cwd: Path, command: list[str]) -> None:
    """KERNEL_LAB_CACHE naming a file: every command says so first (doctor said "ok",
    the others failed with a traceback in the middle)."""
    before = set(cwd.rglob("*"))
    res = lab(*command, cwd=cwd, KERNEL_LAB_CACHE=str(cwd / "afile"))
    refused(res, f"KERNEL_LAB_CACHE={cwd / 'afile'}", "is not a directory", "--cache DIR")
    res = lab(*command, cwd=cwd, KERNEL_LAB_CACHE=str(cwd / "afile" / "cache"))
    refused(res, "cannot be one", f"{cwd / 'afile'} is a file")
    nothing_written(cwd, before)


@pytest.mark.parametrize("args, needles", [
    (["-k", "cancel and ("], ["-k 'cancel and ('", "not a pytest expression", "column",
                              "-k 'cancel and not poll'"]),
    (["-k", "no_scenario_is_called_this"], ["no scenario matches -k", "e.g. -k cancel"]),
    (["-k", ""], ["-k ''", "leave -k out"]),
    (["--", "--no-such-pytest-option"], ["unrecognized arguments: --no-such-pytest-option",
                                         "pytest --help"]),
    (["--", "-m", "no_such_marker"], ["'-m no_such_marker' select no scenario"]),
    (["--kernel", ""], ["empty kernel spec", "debian:7.2"]),
    (["--kernel", "debian:7.2", "--kernel", " "], ["empty kernel spec"]),
    # Before: pytest read "" as the current directory, and the whole suite ran.
    (["--", ""], ["an empty argument after --"]),
])
def test_a_selection_pytest_refuses_is_found_before_the_run(
        cwd: Path, args: list[str], needles: list[str]) -> None:
    """Before: the kernels were fetched, then pytest printed its usage text (or 149
    NOTRUN records, or an empty run directory stayed)."""
    before = set(cwd.rglob("*"))
    refused(_run(cwd, *args), *needles)
    nothing_written(cwd, before)


def _a_run(where: Path) -> Path:
    """A small run directory (records and matrix.json), as `lab run` writes them."""
    records = [rec(f"test_{n}", "PASS") for n in range(3)]
    where.mkdir()
    (where / "results.jsonl").write_text("".join(json.dumps(asdict(r)) + "\n"
                                                 for r in records))
    (where / "command.txt").write_text("lab run\n")
    write(where, Matrix(cells=[{"label": "debian:7.2", "spec": "debian:7.2", "variant": None}],
                        suite=["scenarios/aio"], expected=[(r.cell, r.test) for r in records],
                        assigned=[(r.cell, r.test) for r in records], shard="1/1"))
    return where


@pytest.fixture
def runs(cwd: Path) -> Iterator[Path]:
    run = _a_run(cwd / "run")
    (cwd / "binary").write_bytes(bytes(range(256)) * 8)
    (cwd / "notarun").mkdir()
    (cwd / "notarun" / "notes.txt").write_text("hello\n")
    yield run


@pytest.mark.parametrize("output, needles", [
    ("adir", ["-o adir", "adir is a directory", "a file such as kcidb.json"]),
    ("afile/kcidb.json", ["afile is a file, not a directory"]),
    ("/proc/kcidb.json", ["/proc is not writable"]),
])
def test_export_into_what_is_not_a_file(cwd: Path, runs: Path, output: str,
                                        needles: list[str]) -> None:
    before = set(cwd.rglob("*"))
    refused(lab("export", "--kcidb", str(runs), "-o", output, cwd=cwd), *needles)
    nothing_written(cwd, before)


def test_merge_checks_the_known_issues_before_it_writes(cwd: Path, runs: Path) -> None:
    """./known-issues.toml is broken: before, the merged directory was written, then the
    report's loading of the list failed."""
    (cwd / "known-issues.toml").write_text("[[issue]]\ntest = 3\n")
    before = set(cwd.rglob("*"))
    refused(lab("merge", str(runs), "--into", "merged", cwd=cwd), "known-issues.toml")
    nothing_written(cwd, before)


@pytest.mark.parametrize("into, needles", [
    ("afile", ["--into afile", "is a file"]),
    ("afile/merged", ["afile is a file, not a directory"]),
    ("/proc/merged", ["/proc is not writable"]),
])
def test_merge_into_what_cannot_be_a_directory(cwd: Path, runs: Path, into: str,
                                               needles: list[str]) -> None:
    before = set(cwd.rglob("*"))
    refused(lab("merge", str(runs), "--into", into, cwd=cwd), *needles, "a new directory")
    nothing_written(cwd, before)


@pytest.mark.parametrize("command", [
    ["merge", "{bad}", "--into", "merged"], ["report", "{bad}"], ["compare", "{run}", "{bad}"],
    ["compare", "{bad}", "{run}"], ["export", "--kcidb", "{bad}"],
    ["report", "{run}", "--baseline", "{bad}"],
    ["compare", "{run}", "{run}", "--history", "{bad}"],
])
@pytest.mark.parametrize("bad", ["binary", "notarun", "missing"])
def test_what_is_not_a_run_is_named(cwd: Path, runs: Path, command: list[str], bad: str) -> None:
    before = set(cwd.rglob("*"))
    args = [a.format(bad=cwd / bad, run=runs) for a in command]
    line = refused(lab(*args, cwd=cwd), str(cwd / bad))
    assert "not a" in line and ("`lab run`" in line or "run directories" in line), line
    nothing_written(cwd, before)


@pytest.mark.parametrize("issues, needles", [
    ("binary", ["is not text", "known-issues.toml"]),
    ("adir", ["--known-issues", "adir is not a file"]),
])
@pytest.mark.parametrize("command", [["report", "{run}"], ["compare", "{run}", "{run}"],
                                     ["run", "--cache", "cache"]])
def test_known_issues_that_are_not_a_list(cwd: Path, runs: Path, command: list[str],
                                          issues: str, needles: list[str]) -> None:
    before = set(cwd.rglob("*"))
    args = [a.format(run=runs) for a in command]
    refused(lab(*args, "--known-issues", str(cwd / issues), cwd=cwd), *needles)
    nothing_written(cwd, before)


@pytest.mark.parametrize("suite, needles", [
    ("binary", ["is neither a directory nor a .py file"]),
    ("notarun", ["no scenarios collected from", "test_*.py"]),
])
def test_a_suite_with_no_tests_is_found_before_the_run(cwd: Path, runs: Path, suite: str,
                                                       needles: list[str]) -> None:
    """Before: pytest's "not found" lines and a run directory with a summary, or the
    kernels fetched first and an empty results/ left."""
    before = set(cwd.rglob("*"))
    refused(_run(cwd, "--suite", str(cwd / suite)), *needles)
    nothing_written(cwd, before)


def test_a_bisection_state_that_is_a_file(cwd: Path) -> None:
    import bisect_fake as bf

    commits = bf.make_history(cwd / "linux", 2, {})
    before = set(cwd.rglob("*"))
    res = lab("bisect", "--repo", str(cwd / "linux"), "--good", commits[0], "--bad",
              commits[1], "-k", "destroy_twice", "--cache", str(cwd / "cache"),
              "--state", "afile", cwd=cwd)
    refused(res, "--state afile", "is a file, not a directory")
    assert not (cwd / "results").exists()
    assert {p for p in set(cwd.rglob("*")) - before if "cache" not in p.parts} == set()


def test_a_cache_root_may_not_write(cwd: Path) -> None:
    """--cache in /proc: root passes os.access there.  Before: doctor said ok, and
    `lab fetch` failed with a traceback at its first write."""
    cache = "/proc/lab-cache"
    refused(lab("fetch", "--cache", cache, "debian:7.2", cwd=cwd), f"the cache {cache}",
            "/proc is not writable", "--cache DIR")
    refused(_run(cwd, "--cache", cache, "-k", "cancel"), f"cache: {cache}", "--cache DIR")
    res = lab("doctor", "--cache", cache, cwd=cwd)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"MISSING  cache: {cache}: /proc is not writable" in res.stdout, res.stdout


def test_a_bisection_with_a_k_pytest_refuses(cwd: Path) -> None:
    """Before: exit 3, "the machinery failed", for the user's typo."""
    import bisect_fake as bf

    commits = bf.make_history(cwd / "linux", 2, {})
    before = {p for p in cwd.rglob("*") if "cache" not in p.parts}
    res = lab("bisect", "--repo", str(cwd / "linux"), "--good", commits[0], "--bad",
              commits[1], "-k", "destroy and (", "--cache", str(cwd / "cache"), cwd=cwd)
    refused(res, "-k 'destroy and ('", "not a pytest expression", "column")
    assert {p for p in cwd.rglob("*") if "cache" not in p.parts} == before


@pytest.mark.parametrize("source, needles", [
    ("def test_a(:\n    pass\n", ["test_broken.py: SyntaxError"]),
    ("import no_such_module_kl\n\ndef test_a():\n    pass\n",
     ["test_broken.py: ModuleNotFoundError: No module named 'no_such_module_kl'"]),
])
def test_a_suite_that_does_not_import(cwd: Path, source: str, needles: list[str]) -> None:
    """Before: the kernels fetched, a run directory written, and exit 130 ("interrupted")."""
    (cwd / "suite").mkdir()
    (cwd / "suite" / "test_broken.py").write_text(source)
    before = set(cwd.rglob("*"))
    refused(_run(cwd, "--suite", str(cwd / "suite")), f"collecting {cwd / 'suite'} failed",
            *needles, "python -m pytest --collect-only")
    nothing_written(cwd, before)
