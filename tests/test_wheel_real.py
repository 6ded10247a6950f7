"""`pip install` of the wheel, as a normal user, from another directory: one real boot.

This is the CI's run of the lab as a non-root user and its check of the wheel:
the sdist and the wheel built from the checkout, a fresh venv of the user's with
Debian's python3, the wheel installed in it (its dependencies from PyPI), and from
a directory of the user's, outside the checkout: `lab --version`, `lab doctor`,
`lab kernels` and `lab run` of a few tests (one boot, the user's own cache).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from dists import REPO, build, check_sdist, tracked
from hostuser import normal_user

pytestmark = [pytest.mark.vm, pytest.mark.network]

PYTHON = "/usr/bin/python3"  # Debian's, which a normal user may run (root's may be private)
SELECTION = "test_io_submit"  # 11 tests of one module: the agent, its C extension, NVMe


def test_wheel_in_a_fresh_venv_as_a_normal_user(tmp_path: Path) -> None:
    user = normal_user()
    sdist, wheel = build(tmp_path / "dist")
    if (REPO / ".git").exists():  # what it must hold is read from git (test_packaging.py)
        check_sdist(sdist, tracked())
    home = user.tmp_dir("lab-wheel-")
    try:
        user_wheel = home / wheel.name
        shutil.copy2(wheel, user_wheel)
        user_wheel.chmod(0o644)

        def run(*argv: str, cwd: Path = home, timeout: float = 120) -> str:
            res = user.run(argv, cwd=cwd, timeout=timeout)
            assert res.returncode == 0, f"{' '.join(argv)} -> {res.returncode}:\n" + \
                res.stdout[-4000:]
            return res.stdout

        run(PYTHON, "-m", "venv", str(home / "venv"))
        run(str(home / "venv/bin/pip"), "install", "-q", str(user_wheel), timeout=900)
        work = home / "work"
        run("mkdir", str(work))
        lab = str(home / "venv/bin/lab")
        site = next((home / "venv/lib").glob("python3*/site-packages"))

        assert run(lab, "--version", cwd=work).strip() == f"kernel-lab 0.1.0 ({site})"
        out = run(lab, "doctor", cwd=work)
        assert f"ok       results: {work / 'results'} (writable)" in out
        assert f"ok       cache: {user.home / '.cache/kernel-lab'}" in out
        assert "cached (" in run(lab, "kernels", cwd=work)

        out = run(lab, "run", "--kernel", "debian:7.2", "-k", SELECTION, cwd=work,
                  timeout=1800)
        (run_dir,) = (work / "results").iterdir()  # the defaults: ./results
        records = [json.loads(line)
                   for line in (run_dir / "results.jsonl").read_text().splitlines()]
        assert len(records) == 11, out[-3000:]
        assert {r["verdict"] for r in records} == {"PASS"}, out[-3000:]
        # Ids as from a checkout, not rooted at the installed scenarios/ or at /.
        assert all(r["test"].startswith("scenarios/aio/test_io_submit.py::") for r in records)
        # pytest's rootdir: where the installed scenarios/ is (lab.paths.rootdir_args).
        matrix = json.loads((run_dir / "matrix.json").read_text())
        assert matrix["rootdir"] == str(site)
        # The lab's own scenarios: a rerun or reproducer names them in whichever lab reads
        # the run, from any directory (no `cd` into site-packages).
        assert matrix["options"]["lab_suite"] is True
        assert (run_dir / "command.txt").read_text().startswith("lab run --kernel debian:7.2.")
    finally:
        shutil.rmtree(home, ignore_errors=True)
