"""The quick tier (lab.run.quick) on the host's kernel: what it runs, what it SKIPs and
why, and that a race that could not decide is no PASS there either."""

from __future__ import annotations

import os
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
