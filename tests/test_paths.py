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
    assert paths.rootdir_args(tmp_path) == []  # a suite of the user's: pytest's own choice
    assert paths.rootdir_args(paths.REPO / "tests") == []
    # Node ids' files: rooted above scenarios/ only when every one is in it.
    assert paths.rootdir_args(paths.SCENARIOS_DIR / "aio", paths.SCENARIOS_DIR / "uring") == root
    assert paths.rootdir_args(paths.SCENARIOS_DIR / "aio", tmp_path / "test_a.py") == []


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
