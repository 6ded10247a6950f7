"""The quick tier: the scenarios on the host's own kernel, no VM (``nox -s quick``).

A pytest plugin used instead of the lab's (``pytest -p no:lab -p lab.run.quick
scenarios/``).  The agent is the lab's own client over the local transport
(``Agent.local``): the same archive, checked and unpacked by the same function, the same
ops, real syscalls on whatever kernel runs the tests.  What it cannot do, it SKIPs with
the reason: a scenario marked ``guest_only`` (or ``needs_root``, for a user who is not),
one that needs the guest's NVMe devices, a config option the host's kernel lacks (its own
config: /proc/config.gz or /boot), io_uring turned off by the host's
``kernel.io_uring_disabled``, a feature the host's kernel answers no to (probed as in a
guest, lab.run.features).  A race whose calls never overlapped is INCONCLUSIVE there too,
shown as a SKIP, never a PASS.  No records, no kernel-log watch: the lab run in a guest
stays the verdict of record.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.kernel import facts as facts_mod
from lab.kernel.artifact import Kernel
from lab.paths import cache_root
from lab.run import features
from lab.run.keys import evidence_so_far, required_config
from lab.run.plugin import MARKERS
from lab.run.plugin import deviation as deviation
from lab.run.plugin import inconclusive as inconclusive
from lab.run.plugin import observed as observed
from lab.run.plugin import record as record
from lab.vm.agent import Agent

HOST = "host"
URING_DISABLED = Path("/proc/sys/kernel/io_uring_disabled")
FACTS_KEY = pytest.StashKey["facts_mod.ConfigFacts | None"]()
FEATURES_KEY = pytest.StashKey[dict[str, dict[str, Any]]]()
AGENT_KEY = pytest.StashKey["_HostAgent"]()


def pytest_configure(config: pytest.Config) -> None:
    for line in MARKERS:
        config.addinivalue_line("markers", line)


def host_config() -> tuple[str, str] | None:
    """The running kernel's config and where it came from, if the host has it."""
    release = os.uname().release
    for path in (Path("/proc/config.gz"), Path(f"/boot/config-{release}")):
        try:
            raw = path.read_bytes()
        except OSError:
            continue
        text = gzip.decompress(raw) if path.suffix == ".gz" else raw
        return text.decode(errors="replace"), f"host:{path}"
    return None


def uring_off(value: str) -> str | None:
    """Why io_uring cannot be used as the scenarios use it, from the sysctl's value
    (1: only CAP_SYS_ADMIN or io_uring_group may set up rings, and the scenarios drop
    capabilities; 2: nobody may), else None."""
    value = value.strip()
    if value in ("", "0"):
        return None
    return f"io_uring is turned off on the host (kernel.io_uring_disabled={value})"


def skip_reason(item: pytest.Item, facts: facts_mod.ConfigFacts | None,
                uring_disabled: str) -> str | None:
    """Why ``item`` cannot run on the host's kernel before any fixture, else None."""
    marker = item.get_closest_marker("guest_only")
    if marker is not None:
        why = marker.args[0] if marker.args else "it needs the guest"
        return f"guest only: {why}"
    marker = item.get_closest_marker("needs_root")
    if marker is not None and os.geteuid() != 0:
        why = marker.args[0] if marker.args else "it needs root"
        return f"needs root, as the guest's agent is: {why}"
    required = required_config(item)
    label = f"the host's kernel ({os.uname().release})"
    reason = facts_mod.mismatch(facts, required, label=label)
    if reason is None and "IO_URING" in required:
        reason = uring_off(uring_disabled)
    return reason


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    config = item.config
    if FACTS_KEY not in config.stash:
        found = host_config()
        config.stash[FACTS_KEY] = (facts_mod.ConfigFacts.from_text(found[0], source=found[1])
                                   if found else None)
    try:
        disabled = URING_DISABLED.read_text()
    except OSError:
        disabled = ""  # a kernel without the sysctl: io_uring (if built) is on
    reason = skip_reason(item, config.stash[FACTS_KEY], disabled)
    if reason is not None:
        pytest.skip(reason)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """A test that passed but said it could not decide (``inconclusive``) is no PASS."""
    report = yield
    if report.when == "call" and report.passed:
        why = evidence_so_far(item).inconclusive
        if why:
            report.outcome = "skipped"
            report.longrepr = (str(item.path), item.location[1] or 0,
                               f"INCONCLUSIVE: {why}")
    return report


class _HostAgent:
    """The session's agent on the host, started again after one that died or hung."""

    def __init__(self, cache: Path, workdir: Path) -> None:
        self.cache, self.workdir = cache, workdir
        self.current: Agent | None = None
        self.started = 0

    def get(self) -> Agent:
        if self.current is None or not self.current.alive():
            if self.current is not None:
                self.current.close()
            self.started += 1
            self.current = Agent.local(cache=self.cache, workdir=self.workdir / str(self.started))
        return self.current

    def close(self) -> None:
        if self.current is not None:
            self.current.close()


@pytest.fixture(scope="session")
def lab_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the suites' own session fixtures write (claims.json): a scratch directory."""
    return tmp_path_factory.mktemp("quick-run")


@pytest.fixture(scope="session")
def _host_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_HostAgent]:
    host = _HostAgent(cache_root(None), tmp_path_factory.mktemp("agent"))
    yield host
    host.close()


@pytest.fixture(scope="session")
def kernel() -> Kernel:
    """The host's running kernel, as the scenarios read a kernel (release, version)."""
    release = os.uname().release
    found = host_config()
    return Kernel(spec=HOST, release=release, image=Path(f"/boot/vmlinuz-{release}"),
                  config_source=found[1] if found else "", source=HOST)


@pytest.fixture
def agent(request: pytest.FixtureRequest, _host_agent: _HostAgent) -> Iterator[Agent]:
    """The agent on the host's kernel, its features probed first, reset after the test as
    the guard resets it in a guest (lab.run.guard)."""
    a = _host_agent.get()
    required = features.required_features(request.node)
    if required:
        known = request.config.stash.setdefault(FEATURES_KEY, {})
        missing = [n.removeprefix("!") for n in required if n.removeprefix("!") not in known]
        if missing:
            known.update(a.call("probe.features", names=missing))
        reason = features.mismatch(known, required,
                                   label=f"the host's kernel ({os.uname().release})")
        if reason is not None:
            pytest.skip(reason)
    yield a
    if a.alive():
        a.call("agent.reset")


@pytest.fixture
def nvme() -> dict[str, Any]:
    pytest.skip("needs the guest's NVMe devices (the host's are never touched)")


@pytest.fixture
def vm() -> None:
    pytest.skip("needs the guest itself")
