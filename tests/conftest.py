"""Fixtures shared by the tests: the agent as a local process (see localagent.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from localagent import REPO, Agent, copy_guest


@pytest.fixture(scope="session")
def labsys_so(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("labsys")
    proc = subprocess.run(
        [sys.executable, "-m", "guest.build_ffi", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        check=False,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    built = Path(proc.stdout.strip().splitlines()[-1])
    assert (
        built.parent == out
        and built.name.startswith("_labsys")
        and built.suffix == ".so"
    )
    assert built.exists()
    return built


@pytest.fixture(scope="session")
def agent_root(tmp_path_factory: pytest.TempPathFactory, labsys_so: Path) -> Path:
    root = copy_guest(tmp_path_factory.mktemp("agent"))
    shutil.copy2(labsys_so, root / "guest" / labsys_so.name)
    return root


@pytest.fixture
def agent(agent_root: Path) -> Iterator[Agent]:
    a = Agent(agent_root)
    try:
        yield a
    finally:
        a.close()


# ---------------------------------------------------------------- protocol


@pytest.fixture(autouse=True)
def _no_host_cpu_slots(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests take none of the user's real CPU slots (lab.vm.slots): a lab run booting
    beside them would make them wait.  Tests that boot guests share the slots as users do."""
    if request.node.get_closest_marker("vm") is None:
        monkeypatch.setenv("KERNEL_LAB_CPU_SLOTS", "0")
