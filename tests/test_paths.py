"""Where the lab finds its own files, from a checkout; its defaults from any directory."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from lab import paths
from lab.results import known

REPO = Path(__file__).resolve().parents[1]


def test_a_checkout_reads_its_own_top() -> None:
    assert not paths.INSTALLED and paths.CHECKOUT == REPO == paths.REPO
    assert paths.KERNELS_DIR == REPO / "kernels"
    assert paths.KNOWN_ISSUES == REPO / "known-issues.toml"
    assert (paths.GUEST_DIR / "handoff.c").is_file()
    assert (paths.SCENARIOS_DIR / "conftest.py").is_file()


def test_pytest_is_rooted_above_the_lab_s_scenarios_only(tmp_path: Path) -> None:
    root = [f"--rootdir={paths.REPO}"]
    assert paths.rootdir_args(paths.SCENARIOS_DIR) == root
    assert paths.rootdir_args(paths.SCENARIOS_DIR / "aio" / "test_io_submit.py") == root
    # Node ids' files: rooted above scenarios/ only when every one is in it.
    assert paths.rootdir_args(paths.SCENARIOS_DIR / "aio", paths.SCENARIOS_DIR / "uring") == root
    # The lab's own tests/ have their project's pytest configuration: pytest's choice.
    assert paths.rootdir_args(paths.REPO / "tests") == []


def test_a_suite_of_the_users_is_rooted_at_itself_wherever_the_run_starts(
        tmp_path: Path) -> None:
    """pytest alone roots it at the common ancestor of the suite and the current
    directory: its ids would change with where `lab run` was typed."""
    suite = tmp_path / "suite"
    (suite / "sub").mkdir(parents=True)
    (suite / "sub" / "test_a.py").write_text("")
    assert paths.rootdir_args(suite) == [f"--rootdir={suite}"]
    # Node ids chosen in it keep the suite's root (a reproducer: --suite . and the ids).
    assert paths.rootdir_args(suite / "sub" / "test_a.py", suite=suite) == [f"--rootdir={suite}"]
    assert paths.rootdir_args(suite / "sub" / "test_a.py") == [f"--rootdir={suite / 'sub'}"]
    # Files with nothing in common but /: pytest's own choice, never "--rootdir=/" (nor
    # above scenarios/, where the suite's test would be "::test_a").
    assert paths.rootdir_args(Path("/usr/lib/x/test_b.py"), suite / "sub" / "test_a.py") == []
    # A suite with a pytest configuration of its own: pytest finds its root there.
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    assert paths.rootdir_args(suite) == []
    (tmp_path / "pytest.ini").unlink()
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")  # no pytest in it
    assert paths.rootdir_args(suite) == [f"--rootdir={suite}"]
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    assert paths.rootdir_args(suite) == []


def test_known_issues_of_the_current_directory_first(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert known.path_for(None) == paths.KNOWN_ISSUES  # none here: the lab's own
    (tmp_path / "known-issues.toml").write_text("")
    assert known.path_for(None) == tmp_path / "known-issues.toml"
    given = tmp_path / "other.toml"
    given.write_text("")
    assert known.path_for(given) == given


def test_version_names_the_commit_from_a_checkout(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "lab.cli", "--version"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    if (REPO / ".git").exists():
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        assert re.fullmatch(rf"kernel-lab 0\.1\.0 \(git [^ ]*{head}(-dirty)?, {REPO}\)\n", out)
    else:
        assert out == f"kernel-lab 0.1.0 ({REPO})\n"
