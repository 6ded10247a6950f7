"""The SQE double-read op (guest/areas/uring/uring_race.c) on the host kernel, through the agent.

Needs root (it mounts a scratch tmpfs) and io_uring.  Besides a real run, two
controls show that the op's checks can fail: with the rewriter idle every
completion must say the SQE ran as written, and with a duplicate of each read
end held open the release checks must report the files still alive.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from lab.vm.agent import Agent

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


def _accounted(got: dict[str, Any]) -> None:
    assert got["unexplained"] == 0, got["first_unexplained"]
    assert got["first_other_errno"] is None
    assert got["submitted"] == got["rounds"] > 0
    assert got["as_written"] + got["saw_nop"] + got["saw_other_fd"] + got["eagain"] == \
        got["submitted"]
    assert got["saw_rewrite"] == got["saw_nop"] + got["saw_other_fd"] == got["overlapped"]


@pytest.mark.parametrize("mode", ["pipe", "sqpoll"])
def test_rewritten_sqes_release_their_files(agent: Agent, mode: str) -> None:
    got = agent.call("uring.sqe_double_read", mode=mode, rounds=200, seconds=20, lead=16,
                   opts=["pin", "spin"])
    _accounted(got)
    assert got["rewrites"] > 0
    assert got["pipe_release"]["epipe"] and got["fifo_release"]["epipe"]
    assert got["umount"] == {"ok": True, "errno": None, "ms": got["umount"]["ms"]}
    if mode == "pipe":
        assert got["async_rounds"] == got["rounds"] // 2 + got["rounds"] % 2


def test_control_without_rewrites_runs_every_sqe_as_written(agent: Agent) -> None:
    got = agent.call("uring.sqe_double_read", rounds=100, seconds=20, lead=4, rewrite=False)
    _accounted(got)
    assert got["rewrites"] == 0
    assert got["as_written"] == got["submitted"] and got["saw_rewrite"] == 0


def test_control_with_a_file_held_open_fails_the_release_checks(agent: Agent) -> None:
    got = agent.call("uring.sqe_double_read", rounds=20, seconds=20, hold_fds=True,
                   release_ms=100)
    _accounted(got)
    assert got["pipe_release"]["epipe"] is False
    assert got["fifo_release"]["epipe"] is False
    assert got["umount"]["ok"] is False and got["umount"]["errno"] == "EBUSY"


def test_bad_mode_is_an_error(agent: Agent) -> None:
    reply = agent.request("uring.sqe_double_read", mode="fast")
    assert reply["ok"] is False and "unknown mode" in reply["error"]
