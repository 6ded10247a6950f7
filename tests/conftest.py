"""Fixtures shared by the tests: the agent on the host's kernel, started by the lab's own
client (lab.vm.agent, ``Agent.local``) from the archive the lab stages for guests."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from guest.zygote import untar
from lab.vm.agent import Agent
from lab.vm.stage import archive, stage


@pytest.fixture(scope="session")
def agent_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache with the agent staged in it (built once per session, as the lab builds it)."""
    cache = tmp_path_factory.mktemp("cache")
    stage(cache)
    return cache


@pytest.fixture(scope="session")
def agent_root(tmp_path_factory: pytest.TempPathFactory, agent_cache: Path) -> Path:
    """The staged archive unpacked: ``guest/`` with its extension, and cffi's backend."""
    root = tmp_path_factory.mktemp("agent-root")
    with contextlib.chdir(root):
        untar(archive(stage(agent_cache)))
    return root


@pytest.fixture
def start_agent(agent_cache: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[Callable[[], Agent]]:
    """Starts agents on the host's kernel; each is closed after the test."""
    started: list[Agent] = []

    def start() -> Agent:
        started.append(Agent.local(cache=agent_cache, workdir=tmp_path_factory.mktemp("agent")))
        return started[-1]

    yield start
    for a in started:
        a.close()


@pytest.fixture
def agent(start_agent: Callable[[], Agent]) -> Agent:
    return start_agent()


# ---------------------------------------------------------------- protocol


@pytest.fixture(autouse=True)
def _no_host_cpu_slots(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests take none of the user's real CPU slots (lab.vm.slots): a lab run booting
    beside them would make them wait.  Tests that boot guests share the slots as users do."""
    if request.node.get_closest_marker("vm") is None:
        monkeypatch.setenv("KERNEL_LAB_CPU_SLOTS", "0")
