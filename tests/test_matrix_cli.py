"""Bad input to the matrix's commands: one line, exit 2, nothing written, before any fetch."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_cli import _one_line_exit_2, lab


@pytest.mark.parametrize("args, needles", [
    (["--shard", "3/2"], ["--shard 3/2", "between 1 and N"]),
    (["--shard", "0/2"], ["--shard 0/2"]),
    (["--shard", "x"], ["--shard 'x'", "I/N"]),
    (["--kernel", "debian:7.2", "--variant", "debug"],
     ["cell debian:7.2 x debug", "prebuilt", "debian-src:"]),
    (["--kernel", "debian-src:7.2", "--variant", "base", "--variant", "nope"],
     ["unknown variant 'nope'"]),
    (["--workers", "0"], ["--workers 0"]),
])
def test_bad_run_arguments(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    res = lab("run", *args, cache=tmp_path / "cache", cwd=tmp_path)
    _one_line_exit_2(res, *needles)
    assert not (tmp_path / "results").exists()
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("entry, needle", [
    ('test = "scenarios/[aio"\ncell = "debian:7.2"\nverdicts = ["FAIL"]\n'
     'url = "https://x.org/1"\nexpires = 2027-01-01', "'[' without"),
    ('test = "a::b"\ncell = "debian:7.2"\nverdicts = ["FAIL"]\nurl = "https://x.org/1"\n'
     'expires = "2027-13-01"', "not a date"),
    ('test = "scenarios/*"\ncell = "debian:7.2"\nverdicts = ["FAIL"]\n'
     'url = "https://x.org/1"\nexpires = 2027-01-01', "wildcard_reason"),
])
def test_bad_known_issue_entry(tmp_path: Path, entry: str, needle: str) -> None:
    path = tmp_path / "known-issues.toml"
    path.write_text(f"[[issue]]\n{entry}\n")
    res = lab("run", "--known-issues", str(path), cache=tmp_path / "cache", cwd=tmp_path)
    _one_line_exit_2(res, str(path), "issue 1", needle)
    assert not (tmp_path / "results").exists()
    res = lab("report", str(tmp_path), "--known-issues", str(path), cache=tmp_path / "cache",
              cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr


def test_missing_known_issues_file(tmp_path: Path) -> None:
    res = lab("run", "--known-issues", str(tmp_path / "nope.toml"), cache=tmp_path / "c",
              cwd=tmp_path)
    _one_line_exit_2(res, "nope.toml", "does not exist")


def test_the_project_s_known_issues_parse() -> None:
    from lab.paths import REPO
    from lab.results import known

    assert (REPO / known.FILE).is_file()
    known.load(REPO / known.FILE)  # a bad entry committed fails here, not in a nightly run
