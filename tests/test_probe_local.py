"""The agent's feature probes (guest/areas/probe/ops.py) against the host's kernel: real
syscalls, no VM.  Each probe must be able to say no: an unknown flag reads as unknown."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from guest.areas.probe.ops import FEATURES
from lab.vm.agent import Agent

RWF_DSYNC = 0x02  # known to every kernel with pwritev2 (4.7)
RWF_UNKNOWN = 1 << 24  # above every flag of every kernel so far


def test_every_feature_answers_with_how_it_was_told(agent: Agent) -> None:
    got = agent.call("probe.features", names=sorted(FEATURES))
    assert set(got) == set(FEATURES)
    for name, answer in got.items():
        assert answer["has"] in (True, False, None) and answer["how"], (name, answer)
    # The host's kernel (6.18 or later here) has io_uring's uring_cmd and its ring probe.
    assert got["uring_cmd"]["has"] is True, got["uring_cmd"]
    assert "IORING_REGISTER_PROBE" in got["uring_cmd"]["how"]


def test_ring_probe_lists_the_opcodes(agent: Agent) -> None:
    ops = agent.call("probe.uring_ops")
    assert 0 in ops  # IORING_OP_NOP, in every io_uring
    assert ops == sorted(set(ops)) and all(0 <= op < 256 for op in ops)


def test_rw_flag_probe_tells_unknown_from_known(agent: Agent) -> None:
    unknown = agent.call("probe.rwf_flag", flag=RWF_UNKNOWN)
    assert unknown["has"] is False and "EOPNOTSUPP" in unknown["how"], unknown
    known = agent.call("probe.rwf_flag", flag=RWF_DSYNC, name="RWF_DSYNC")
    assert known["has"] is True, known


def _fallbacks() -> list[tuple[str, str, tuple[int, int]]]:
    """Each constant the agent's C spells out under #ifndef (newer than the build host's
    headers): (file, name, the Linux release its comment says added it)."""
    found = []
    for c in sorted((Path(__file__).parents[1] / "guest" / "areas").glob("*/*.c")):
        for m in re.finditer(r"#ifndef (\w+)\n#define \1 [^\n]*?Linux (\d+)\.(\d+)",
                             c.read_text()):
            found.append((c.name, m.group(1), (int(m.group(2)), int(m.group(3)))))
    return found


def test_a_constant_spelled_out_says_which_release_added_it() -> None:
    """A fallback without the release in its comment fails here (see _fallbacks)."""
    for c in sorted((Path(__file__).parents[1] / "guest" / "areas").glob("*/*.c")):
        spelled = re.findall(r"#ifndef (\w+)\n#define \1 ", c.read_text())
        assert sorted(spelled) == sorted(n for f, n, _ in _fallbacks() if f == c.name), c
    assert {"RWF_ATOMIC", "RWF_DONTCACHE", "IORING_URING_CMD_MULTISHOT"} <= \
        {name for _, name, _ in _fallbacks()}


@pytest.mark.parametrize("name", ["RWF_ATOMIC", "RWF_DONTCACHE"])
def test_a_spelled_out_rw_flag_is_the_one_the_kernel_knows(agent: Agent, name: str) -> None:
    """On a kernel of the release that added it (this machine's is 6.18), the value the
    agent spelled out is a flag that kernel knows: a wrong bit reads as unknown."""
    since = {n: v for _, n, v in _fallbacks()}[name]
    host = tuple(int(x) for x in os.uname().release.split(".")[:2])
    if host < since:
        pytest.skip(f"the host's kernel {os.uname().release} predates {name} "
                    f"(Linux {since[0]}.{since[1]})")
    got = agent.call("probe.features", names=[name.lower()])[name.lower()]
    assert got["has"] is True, got


def test_multishot_probe_agrees_with_the_rules(agent: Agent) -> None:
    """The probe's answer and the flag rule it rests on, asked separately: a uring_cmd with
    BUFFER_SELECT and MULTISHOT alone is EINVAL-or-taken with multishot (prep needs the
    pair), EOPNOTSUPP without (io_init_req refuses BUFFER_SELECT first)."""
    has = agent.call("probe.features", names=["uring_cmd_multishot"])["uring_cmd_multishot"]
    ring = agent.call("uring.setup", entries=2)["ring"]
    fd = agent.call("fs.open", path="/dev/null", flags=["O_RDWR"])
    out = agent.call("uring.run", ring=ring, timeout_ms=2000, sqes=[
        {"opcode": "URING_CMD", "fd": fd, "uring_cmd_flags": [], "flags": ["BUFFER_SELECT"],
         "buf_group": 0}])
    (cqe,) = out["cqes"]
    # BUFFER_SELECT without MULTISHOT: prep's EINVAL with it, io_init_req's EOPNOTSUPP without.
    assert cqe["res"] == (-22 if has["has"] else -95), (has, cqe)


def test_an_unknown_feature_is_an_error(agent: Agent) -> None:
    reply = agent.request("probe.features", names=["no_such_feature"])
    assert reply["ok"] is False and "no_such_feature" in str(reply), reply


@pytest.mark.parametrize("name", sorted(FEATURES))
def test_each_feature_is_probed_alone(agent: Agent, name: str) -> None:
    got = agent.call("probe.features", names=[name])
    assert list(got) == [name]


def test_every_feature_a_scenario_requires_has_a_probe() -> None:
    """A name the agent has no probe for would ERROR the test in the guest, not SKIP it."""
    wanted = set()
    for path in (Path(__file__).parents[1] / "scenarios").rglob("*.py"):
        for args in re.findall(r"requires_feature\(([^)]*)\)", path.read_text()):
            wanted |= {a.strip().strip("\"'").removeprefix("!") for a in args.split(",")}
    assert wanted and wanted <= set(FEATURES), wanted - set(FEATURES)


def test_a_probe_that_fails_for_another_reason_decides_nothing(agent_root: Path) -> None:
    """io_uring_setup refused for want of a file descriptor (EMFILE) says nothing about the
    kernel's opcodes: the answer is undecided (the test runs), never "absent" (a SKIP that
    would claim the kernel lacks uring_cmd)."""
    import subprocess
    import sys

    code = ("import resource\n"
            "from guest import native\n"
            "from guest.areas.probe import ops as ops_probe\n"
            "native.lib()\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (3, 3))\n"
            "print(ops_probe.FEATURES['uring_cmd']())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=agent_root, timeout=60, check=True).stdout
    assert out.strip() == ("{'has': None, 'how': 'io_uring_setup or IORING_REGISTER_PROBE: "
                           "EMFILE'}"), out
