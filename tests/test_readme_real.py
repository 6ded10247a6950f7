"""The README's quick-start commands, run as they are written there.

Each command below must appear verbatim on a code line of README.md (so a README edit
that changes one fails here until the test runs the new text), and is run by a shell
as a user would type it: the nox sessions from the checkout and from a kernel tree,
then the `lab` commands from `.nox/lab/bin/`, which the first `nox -s lab` made.

The kernel tree is a directory holding only `arch/x86/boot/bzImage`, as a developer's
tree does after `make bzImage` from the lab's point of view: the lab's own base build
copied there, with no config beside it and no modules.  `~` is a home of the test's
own whose `kernel-lab` is this checkout, so `~/linux` and `~/kernel-lab` mean what the
README says; the kernel cache stays the real one (no second download).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hostuser import normal_user

from lab.kernel.resolve import resolve_kernel
from lab.paths import REPO, cache_root

pytestmark = [pytest.mark.vm, pytest.mark.network, pytest.mark.build]

README = REPO / "README.md"
NOX_DEBIAN = "python3 -m nox -s lab -- --kernel debian:6.1 -k cancel"
NOX_USER = "pipx run nox -s lab -- -k cancel"  # a normal user's, on Debian's python3
NOX_QUICK = "python3 -m nox -s quick"  # the scenarios on the host's own kernel, no VM
NOX_TREE = ("cd ~/linux && python3 -m nox -f ~/kernel-lab/noxfile.py -s lab -- "
            "--kernel ./arch/x86/boot/bzImage -k cancel")
NODE = "scenarios/aio/test_io_cancel.py::test_cancel_completed_is_einval"
LAB_LINES = ("lab doctor", "lab kernels", "lab fetch debian:6.1",
             "lab run --kernel debian:7.2 -k cancel", "lab run --help", f"lab run -- {NODE}")


def code_lines() -> list[str]:
    """The README's code lines (indented four spaces), without their trailing comments."""
    out = []
    for line in README.read_text().splitlines():
        if line.startswith("    ") and line.strip():
            out.append(re.sub(r"\s+#\s.*$", "", line.strip()))
    return out


def test_the_commands_this_test_runs_are_the_readmes() -> None:
    lines = code_lines()
    for cmd in (NOX_DEBIAN, NOX_USER, NOX_TREE, NOX_QUICK, *LAB_LINES):
        assert cmd in lines, f"README.md no longer says {cmd!r}: run what it says instead"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home whose kernel-lab is this checkout and whose linux is a bare kernel tree."""
    home = tmp_path_factory.mktemp("home")
    (home / "kernel-lab").symlink_to(REPO)
    boot = home / "linux" / "arch" / "x86" / "boot"
    boot.mkdir(parents=True)
    built = resolve_kernel("debian-src:7.2", cache=cache_root(), variant="base")
    shutil.copyfile(built.image, boot / "bzImage")
    return home


def shell(cmd: str, *, cwd: Path, home: Path, timeout: float = 1800) -> str:
    """``cmd`` run by bash as typed, with ``python3`` the test session's interpreter
    (which has nox) first on the PATH; returns the output, asserting exit 0."""
    env = {**os.environ, "HOME": str(home), "KERNEL_LAB_CACHE": str(cache_root()),
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    for var in ("VIRTUAL_ENV", "NOX_CURRENT_SESSION"):  # as typed in a fresh shell
        env.pop(var, None)
    res = subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=timeout)
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"{cmd}\n{out[-5000:]}"
    return out


def run_dir_of(out: str) -> Path:
    found = re.findall(r"kernel-lab: run directory (\S+)", out)
    assert found, out[-3000:]
    return Path(found[-1])


def records(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]


def passed_some(run_dir: Path) -> list[dict[str, Any]]:
    recs = records(run_dir)
    verdicts = {r["verdict"] for r in recs}
    assert "PASS" in verdicts and verdicts <= {"PASS", "SKIP"}, verdicts
    assert all(r["test"].startswith("scenarios/") and "cancel" in r["test"] for r in recs)
    return recs


def test_nox_from_the_checkout_with_another_debian_kernel(home: Path) -> None:
    out = shell(NOX_DEBIAN, cwd=REPO, home=home)
    run_dir = run_dir_of(out)
    assert run_dir.parent == REPO / "results"
    recs = passed_some(run_dir)
    assert {r["kernel"]["spec"] for r in recs} == {"debian:6.1"}
    shutil.rmtree(run_dir)


def test_nox_quick_runs_scenarios_on_the_host_and_says_why_others_skip(tmp_path: Path) -> None:
    """The quick tier as written: no VM, some scenarios pass on the host's kernel, none
    fails, and the NVMe ones SKIP saying so (lab.run.quick)."""
    out = shell(NOX_QUICK, cwd=REPO, home=tmp_path, timeout=600)
    summary = re.findall(r"=+ (\d+) passed, (\d+) skipped in", out)
    assert summary and int(summary[-1][0]) > 0 and int(summary[-1][1]) > 0, out[-3000:]
    assert "needs the guest's NVMe devices" in out
    assert "kernel-lab: run directory" not in out  # no lab run, no VM


def test_nox_from_a_kernel_tree_with_a_relative_bare_bzimage(home: Path) -> None:
    """The README's kernel-tree line: nox runs in the lab's checkout, but the relative
    image path and the run directory are the tree's."""
    tree = home / "linux"
    out = shell(NOX_TREE, cwd=home, home=home)
    run_dir = run_dir_of(out)
    assert run_dir.parent == tree / "results"
    recs = passed_some(run_dir)
    assert {r["kernel"]["spec"] for r in recs} == {"./arch/x86/boot/bzImage"}
    # The reproducer pins the image by its content.
    assert ",sha256=" in (run_dir / "command.txt").read_text()


def test_the_lab_commands_from_nox_lab_bin(home: Path, tmp_path: Path) -> None:
    """`lab doctor`, `lab kernels`, `lab fetch`, `lab run` as written, with the `lab` the
    first `nox -s lab` installed (the nox tests above made it), from another directory."""
    lab_bin = REPO / ".nox" / "lab" / "bin"
    assert (lab_bin / "lab").exists(), "the nox tests above make .nox/lab"
    path = f"{lab_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    outs = {}
    for cmd in LAB_LINES:
        outs[cmd] = shell(f"PATH={path} {cmd}", cwd=tmp_path, home=home)
    assert "KVM" in outs["lab doctor"]
    assert "debian:7.2" in outs["lab kernels"] or "7.2." in outs["lab kernels"]
    assert "6.1." in outs["lab fetch debian:6.1"]
    run_dir = run_dir_of(outs["lab run --kernel debian:7.2 -k cancel"])
    assert run_dir.parent == tmp_path / "results"
    passed_some(run_dir)
    assert "exit status:" in outs["lab run --help"] and "worktree:" in outs["lab run --help"]
    one = records(run_dir_of(outs[f"lab run -- {NODE}"]))
    assert [(r["test"].split("[")[0], r["verdict"]) for r in one] == [(NODE, "PASS")]


def test_a_normal_user_runs_the_quick_start_in_a_clone_of_their_own() -> None:
    """The quick start as most users meet it: their own clone, their own user, Debian's
    python3 (which refuses `pip install nox`) and pipx, the host packages already there."""
    user = normal_user()
    home = user.tmp_dir("lab-readme-")
    try:
        clone = home / "kernel-lab"
        # As from a server: git serves no other user a repository that is not theirs
        # (safe.directory), so the commits go through a bundle.
        bundle = home / "kernel-lab.bundle"
        subprocess.run(["git", "-C", str(REPO), "bundle", "create", "-q", str(bundle), "HEAD"],
                       check=True, timeout=300)
        bundle.chmod(0o644)
        res = user.run(["git", "clone", "-q", str(bundle), str(clone)], cwd=home, timeout=300)
        assert res.returncode == 0, res.stdout
        res = user.run(["bash", "-c", NOX_USER], cwd=clone, timeout=1800)
        out = res.stdout
        assert res.returncode == 0, out[-5000:]
        run_dir = run_dir_of(out)
        assert run_dir.parent == clone / "results"
        recs = passed_some(run_dir)
        assert {r["kernel"]["spec"] for r in recs} == {"debian:7.2"}
    finally:
        shutil.rmtree(home, ignore_errors=True)
