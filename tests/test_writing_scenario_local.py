"""docs/writing-a-scenario.md is true: its three snippets, put into a copy of the
repository where it says, make a scenario the quick tier runs and passes, and the copy
differs from the repository in exactly the files its table names."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "writing-a-scenario.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), re.S)


def _apply(copy: Path) -> None:
    """Each snippet where the walk-through puts it."""
    (claim,) = _blocks("toml")
    op, test = _blocks("python")
    with open(copy / "scenarios/uring/claims.toml", "a") as f:
        f.write("\n" + claim)
    function, table = op.split("\n\n\nOPS: dict[str, Callable[..., Any]] = {\n")
    entry = table.split("\n")[0]
    ops = copy / "guest/areas/uring/ops.py"
    head = "OPS: dict[str, Callable[..., Any]] = {\n"
    text = ops.read_text()
    assert text.count(head) == 1
    ops.write_text(text.replace(head, f"{function}\n\n\n{head}{entry}\n"))
    name = re.search(r"`scenarios/uring/(test_\w+\.py)`:", DOC.read_text())
    assert name is not None
    (copy / "scenarios/uring" / name.group(1)).write_text(test)


def test_the_walk_through_makes_a_passing_scenario_in_three_files(
        tmp_path: Path, agent_cache: Path) -> None:
    copy = tmp_path / "repo"
    listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                            check=True).stdout.split()
    for rel in listed:
        if (REPO / rel).is_file():
            (copy / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, copy / rel)
    _apply(copy)
    changed = sorted(str(p.relative_to(copy)) for p in copy.rglob("*") if p.is_file()
                     and (not (REPO / p.relative_to(copy)).is_file()
                          or (REPO / p.relative_to(copy)).read_bytes() != p.read_bytes()))
    table = re.findall(r"^\| `([^`]+)`", DOC.read_text(), re.M)
    assert len(changed) == 3 and len(table) == 4, (changed, table)
    assert changed == ["guest/areas/uring/ops.py", "scenarios/uring/claims.toml",
                       "scenarios/uring/test_nop_echo.py"]
    # Run from the copy: its lab, guest and scenarios are the ones imported and staged.
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:lab", "-p",
         "lab.run.quick", "-rA", "-q", "scenarios/uring/test_nop_echo.py"],
        cwd=copy, env=dict(os.environ, KERNEL_LAB_CACHE=str(agent_cache),
                           PYTHONPATH=str(copy)),
        capture_output=True, text=True, timeout=300, check=False)
    out = res.stdout + res.stderr
    if "1 skipped" in out and "io_uring" in out:  # a host with io_uring off: said, not hidden
        pytest.skip(f"the host's kernel could not run the walk-through: {out.strip()[-300:]}")
    assert res.returncode == 0 and "1 passed" in out, out
