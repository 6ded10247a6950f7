"""kernel.io_uring_disabled (6.6+): who may call io_uring_setup at 0, 1 and 2."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from lab.vm.agent import Agent
from scenarios.uring.conftest import GID_URING, UID_DISABLED, UID_GROUP_MEMBER, creds_run

# A kernel without the sysctl (6.6+) SKIPs.
pytestmark = [pytest.mark.requires_feature("io_uring_disabled"),
              pytest.mark.guest_only("it sets kernel.io_uring_disabled, which every process "
                                     "of the kernel obeys")]

DISABLED = "/proc/sys/kernel/io_uring_disabled"
GROUP = "/proc/sys/kernel/io_uring_group"
MEMLOCK = 1 << 20  # room for the ring's own pages on 6.14+ (not what is tested here)

# Who calls io_uring_setup: the credentials given to creds.run.
CALLERS: dict[str, dict[str, Any]] = {
    "root": {"uid": 0},
    "root-without-CAP_SYS_ADMIN": {"uid": 0, "caps": ["CAP_IPC_LOCK", "CAP_SETUID"]},
    "unprivileged": {"uid": UID_DISABLED, "gid": UID_DISABLED, "groups": [], "caps": []},
    "io_uring_group-member": {"uid": UID_GROUP_MEMBER, "gid": UID_GROUP_MEMBER,
                              "groups": [GID_URING], "caps": []},
}

# Documentation/admin-guide/sysctl/kernel.rst, io_uring/io_uring.c io_uring_allowed().
EXPECTED: dict[int, dict[str, str]] = {
    0: dict.fromkeys(CALLERS, "ok"),
    1: {"root": "ok", "root-without-CAP_SYS_ADMIN": "EPERM", "unprivileged": "EPERM",
        "io_uring_group-member": "ok"},
    2: dict.fromkeys(CALLERS, "EPERM"),
}


@pytest.fixture
def sysctl(agent: Agent) -> Iterator[None]:
    """Save io_uring_disabled and io_uring_group; restore both whatever the test did."""
    saved = {p: agent.call("sys.read_text", path=p).strip() for p in (DISABLED, GROUP)}
    agent.call("sys.write_text", path=GROUP, text=str(GID_URING))
    try:
        yield
    finally:
        for path, value in saved.items():
            agent.call("sys.write_text", path=path, text=value)
        assert agent.call("sys.read_text", path=DISABLED).strip() == saved[DISABLED]


@pytest.mark.claim("io_uring.disabled_sysctl")
@pytest.mark.parametrize("value", [0, 1, 2])
def test_setup_allowed_by_caller(agent: Agent, sysctl: None, value: int, record: Any) -> None:
    agent.call("sys.write_text", path=DISABLED, text=str(value))
    got = {}
    for name, creds in CALLERS.items():
        reply = creds_run(agent, [{"op": "uring.setup", "args": {"entries": 1}}],
                          memlock=MEMLOCK, **creds)
        got[name] = reply["steps"][0].get("errno", "ok")
    record("outcomes", got)
    assert got == EXPECTED[value]


@pytest.mark.claim("io_uring.disabled_only_setup")
def test_existing_ring_keeps_working(agent: Agent, sysctl: None) -> None:
    """Only setup is gated: a ring made before io_uring_disabled=2 still runs requests."""
    ring = agent.call("uring.setup", entries=4)["ring"]
    agent.call("sys.write_text", path=DISABLED, text="2")
    assert agent.errno_of("uring.setup", entries=1) == "EPERM"
    out = agent.call("uring.run", ring=ring, sqes=[{"opcode": "NOP", "user_data": 42}] * 3,
                     timeout_ms=5000)
    assert out["submitted"] == 3 and not out["timed_out"]
    assert [(c["user_data"], c["res"]) for c in out["cqes"]] == [(42, 0)] * 3
