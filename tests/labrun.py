"""Running `lab run` for real from the tests, and reading what it left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.paths import cache_root

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = REPO / "scenarios"


@dataclass(frozen=True)
class LabRun:
    """One finished `lab run`: its exit status, output and run directory."""

    returncode: int
    out: str
    run_dir: Path

    def records(self) -> list[dict[str, Any]]:
        text = (self.run_dir / "results.jsonl").read_text()
        return [json.loads(line) for line in text.splitlines()]

    def by_name(self, *, params: bool = False) -> dict[str, dict[str, Any]]:
        """Records keyed by test name, with or without the "[kernel-…]" parameters."""
        out = {}
        for rec in self.records():
            name = rec["test"].split("::", 1)[1]
            out[name if params else name.split("[")[0]] = rec
        return out


def lab_cmd(tmp_path: Path, *args: str, kernel: str = "debian:7.2") -> list[str]:
    return [sys.executable, "-m", "lab.cli", "run", "--kernel", kernel,
            "--results", str(tmp_path / "results"), "--cache", str(cache_root()), *args]


def lab_run(tmp_path: Path, *args: str, kernel: str = "debian:7.2", timeout: float = 1800,
            env: dict[str, str] | None = None) -> LabRun:
    """Run `lab run` as a user would (one run directory under tmp_path/results)."""
    res = subprocess.run(lab_cmd(tmp_path, *args, kernel=kernel), capture_output=True,
                         text=True, timeout=timeout, cwd=REPO,
                         env={**os.environ, **(env or {})})
    out = res.stdout + res.stderr
    runs = sorted((tmp_path / "results").glob("*"))
    assert len(runs) == 1, out[-3000:]
    return LabRun(res.returncode, out, runs[0])


def qemus_of(run_dir: Path) -> list[int]:
    """QEMU processes still running for ``run_dir``'s guests."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"qemu-system" in cmdline and str(run_dir).encode() in cmdline:
            found.append(int(proc.name))
    return found
