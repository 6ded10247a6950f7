"""The quick tier (lab.run.quick) on the host's kernel: what it runs, what it SKIPs and
why, and that a race that could not decide is no PASS there either."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lab.run.quick import host_config, uring_off

SUITE = '''
import pytest


def test_ping(agent):
    assert agent.call("agent.ping") == "pong"


def test_fails(agent):
    assert agent.call("agent.ping") == "ping"


@pytest.mark.guest_only("it sets a sysctl")
def test_guest_only(agent):
    raise AssertionError("ran on the host")


@pytest.mark.requires_config("NO_SUCH_OPTION_ANYWHERE")
def test_config(agent):
    raise AssertionError("ran without its option")


@pytest.mark.requires_feature("!uring_cmd")
def test_feature(agent):
    raise AssertionError("ran on a kernel with the feature it must lack")


def test_nvme(agent, nvme):
    raise AssertionError("ran without NVMe")


def test_inconclusive(agent, inconclusive):
    inconclusive("the calls never overlapped")


def test_reset_between_tests_1(agent):
    agent.call("fs.pipe")


def test_reset_between_tests_2(agent):
    left = agent.call("agent.reset")
    assert not any(left.values()), left
'''


def test_the_quick_tier_runs_skips_and_says_why(tmp_path: Path, agent_cache: Path) -> None:
    (tmp_path / "test_suite.py").write_text(textwrap.dedent(SUITE))
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:lab", "-p",
         "lab.run.quick", "-rA", "-q", "test_suite.py"],
        cwd=tmp_path, env=dict(os.environ, KERNEL_LAB_CACHE=str(agent_cache)),
        capture_output=True, text=True, timeout=300, check=False)
    out = res.stdout
    assert res.returncode == 1, out  # test_fails
    assert "PASSED test_suite.py::test_ping" in out
    assert "FAILED test_suite.py::test_fails" in out
    assert "guest only: it sets a sysctl" in out
    if host_config() is not None:  # else the test runs (and fails): nobody could tell
        assert "lacks CONFIG_NO_SUCH_OPTION_ANYWHERE" in out
    assert "not applicable: the host's kernel" in out and "has uring_cmd" in out
    assert "needs the guest's NVMe devices" in out
    assert "INCONCLUSIVE: the calls never overlapped" in out
    assert "PASSED test_suite.py::test_reset_between_tests_2" in out
    assert "ran on the host" not in out and "ran without NVMe" not in out
    assert "ran on a kernel with the feature" not in out


@pytest.mark.parametrize("value, off", [("0\n", False), ("", False), ("1\n", True),
                                        ("2\n", True)])
def test_io_uring_turned_off_on_the_host_is_a_skip(value: str, off: bool) -> None:
    reason = uring_off(value)
    assert (reason is not None) == off
    if off:
        assert f"kernel.io_uring_disabled={value.strip()}" in str(reason)


# The scenarios that stand in for the local claim checks the quick tier replaced: on this
# host (root, io_uring on) each must PASS, not SKIP (a wrong guest_only would hide it).
STAND_INS = [
    "scenarios/aio/test_destroy_edges.py::test_destroy_wakes_blocked_getevents",
    "scenarios/aio/test_destroy_edges.py::test_corrupted_ring_id_is_einval_until_restored",
    "scenarios/aio/test_file_refs.py::test_pending_poll_keeps_its_file",
    "scenarios/aio/test_submit_efault.py::test_iocb_in_read_only_page_is_efault",
    "scenarios/aio/test_signals.py::test_signal_into_blocking_pipe_read",
    "scenarios/uring/test_ring_rules.py::test_getevents_waits_for_min_complete",
    "scenarios/uring/test_ring_rules.py::test_out_of_range_sq_index_is_dropped",
    "scenarios/uring/test_accounting.py::test_exemption_latched_at_creation",
]


def test_the_stand_ins_for_the_local_claim_checks_pass_on_the_host(agent_cache: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the accounting stand-in needs root (needs_root), as the guest's agent is")
    off = uring_off(Path("/proc/sys/kernel/io_uring_disabled").read_text()
                    if Path("/proc/sys/kernel/io_uring_disabled").exists() else "")
    if off is not None:
        pytest.skip(str(off))
    repo = Path(__file__).resolve().parents[1]
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:lab", "-p",
         "lab.run.quick", "-rA", "-q", *STAND_INS],
        cwd=repo, env=dict(os.environ, KERNEL_LAB_CACHE=str(agent_cache)),
        capture_output=True, text=True, timeout=300, check=False)
    passed = set(re.findall(r"^PASSED (\S+)", res.stdout, re.M))
    assert passed == set(STAND_INS), res.stdout[-3000:]
