"""The nightly workflow says what the issue asks (its schema is checked by `nox -s lint`)."""

from __future__ import annotations

import re
from pathlib import Path

TEXT = (Path(__file__).resolve().parents[1] / ".github/workflows/nightly.yml").read_text()


def test_scheduled_matrix_of_shards() -> None:
    assert re.search(r"^on:\n  schedule:\n    - cron:", TEXT, re.M)
    assert "fail-fast: false" in TEXT
    assert re.search(r"shard: \[1, 2, 3, 4\]", TEXT)
    for kernel in ("debian:6.1", "debian:6.12", "debian:7.2", "debian:7.3", "debian-src:7.3"):
        assert f"--kernel {kernel}" in TEXT
    assert "--variant base --variant debug" in TEXT


def test_cache_artifacts_and_summary() -> None:
    assert "actions/cache@v4" in TEXT and "actions/cache/restore@v4" in TEXT
    assert "hashFiles('kernels/**')" in TEXT  # the catalogue and the fragments
    uploads = TEXT.count("actions/upload-artifact@v4")
    assert uploads == 2 and TEXT.count("if: always()") >= uploads + 1
    assert "lab merge shards/*/* --into merged" in TEXT
    assert "lab compare previous merged" in TEXT and "$GITHUB_STEP_SUMMARY" in TEXT
    assert "gh run download" in TEXT  # the previous night's merged run
    assert "--privileged" in TEXT  # /dev/kvm reaches the container when the runner has it
