"""The agent's io_uring code against the host kernel: real rings, no VM, no mocks.

Cheap checks of the ring plumbing (mappings, SQE fields, CQE32, provided buffer
rings, timed waits) and of creds.run; the kernel-dependent answers come from
the same data the scenarios use (scenarios/uring/expectations.py).  The claims the
quick tier runs as scenarios on the host (the memlock limit, the latched exemption:
scenarios/uring/test_accounting.py) are not repeated here.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

from lab.vm.agent import Agent
from scenarios.uring.conftest import ring_pages
from scenarios.uring.expectations import EXPECTATIONS, UNVERIFIED, by_multishot, expect

HOST = tuple(int("".join(c for c in p if c.isdigit()) or 0)
             for p in os.uname().release.split("-")[0].split(".")[:3])
ROOT = os.geteuid() == 0


def _file(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "data"
    path.write_bytes(data)
    return str(path)


def test_nop_roundtrip_and_ring_params(agent: Agent) -> None:
    ring = agent.call("uring.setup", entries=4)
    assert ring["sq_entries"] == 4 and ring["cq_entries"] == 8
    assert (ring["sqe_size"], ring["cqe_size"]) == (64, 16)
    out = agent.call("uring.run", ring=ring["ring"],
                   sqes=[{"opcode": "NOP", "user_data": i} for i in (11, 12, 13)])
    assert out["submitted"] == 3 and not out["timed_out"]
    assert sorted(c["user_data"] for c in out["cqes"]) == [11, 12, 13]
    assert {c["res"] for c in out["cqes"]} == {0}
    agent.call("uring.close", ring=ring["ring"])
    assert agent.request("uring.close", ring=ring["ring"])["ok"] is False  # handle gone


def test_big_entries_and_full_sq(agent: Agent) -> None:
    ring = agent.call("uring.setup", entries=2, flags=["SQE128", "CQE32"])
    assert (ring["sqe_size"], ring["cqe_size"]) == (128, 32)
    out = agent.call("uring.run", ring=ring["ring"], sqes=[{"opcode": "NOP", "user_data": 5}])
    assert out["cqes"][0]["big"] == [0, 0] and out["cqes"][0]["user_data"] == 5
    # Three SQEs into a 2-entry SQ: the third does not fit, nothing is half-submitted.
    reply = agent.request("uring.submit", ring=ring["ring"], sqes=[{"opcode": "NOP"}] * 3)
    assert reply.get("errno") == "EBUSY", reply


def test_wait_is_bounded(agent: Agent) -> None:
    ring = agent.call("uring.setup", entries=2)["ring"]
    started = time.monotonic()
    out = agent.call("uring.wait", ring=ring, nr=1, timeout_ms=300)
    took = time.monotonic() - started
    assert out == {"cqes": [], "timed_out": True}
    assert 0.25 <= took < 5
    assert "positive timeout" in agent.request("uring.wait", ring=ring, timeout_ms=0)["error"]


def test_read_into_mem_buffer(agent: Agent, tmp_path: Path) -> None:
    data = os.urandom(8192)
    fd = agent.call("fs.open", path=_file(tmp_path, data))
    buf = agent.call("mem.alloc", size=4096)
    ring = agent.call("uring.setup", entries=4)["ring"]
    out = agent.call("uring.run", ring=ring, sqes=[{"opcode": "READ", "fd": fd, "buf": buf,
                                                  "len": 4096, "off": 4096}])
    assert out["cqes"][0]["res"] == 4096
    assert bytes.fromhex(agent.call("mem.read", handle=buf)) == data[4096:]


def test_provided_buffer_ring_select(agent: Agent, tmp_path: Path) -> None:
    data = b"provided-buffer " * 64
    fd = agent.call("fs.open", path=_file(tmp_path, data))
    ring = agent.call("uring.setup", entries=4)["ring"]
    pbuf = agent.call("uring.pbuf_register", ring=ring, bgid=3, entries=4, buf_size=512)
    out = agent.call("uring.run", ring=ring, sqes=[
        {"opcode": "READ", "fd": fd, "flags": ["BUFFER_SELECT"], "buf_group": 3, "len": 512,
         "off": 0}])
    (cqe,) = out["cqes"]
    assert cqe["res"] == 512 and "bid" in cqe, cqe
    assert bytes.fromhex(agent.call("uring.pbuf_read", pbuf=pbuf, bid=cqe["bid"],
                                  length=512)) == data[:512]
    agent.call("uring.pbuf_unregister", pbuf=pbuf)


@pytest.mark.parametrize("key,cmd_flags,sqe_flags", [
    ("mshot.fixed", ["MULTISHOT", "FIXED"], []),
    ("mshot.fixed+bufsel", ["MULTISHOT", "FIXED"], ["BUFFER_SELECT"]),
    ("mshot.no_bufsel", ["MULTISHOT"], []),
    ("mshot.bufsel_only", [], ["BUFFER_SELECT"]),
    ("mshot.unknown_bit", 1 << 5, []),
])
def test_uring_cmd_flag_rules_on_host(agent: Agent, tmp_path: Path, key: str,
                                      cmd_flags: list[str] | int,
                                      sqe_flags: list[str]) -> None:
    # The flag checks run in prep, before the file is asked: any fd exercises them.
    fd = agent.call("fs.open", path=_file(tmp_path, b"x"))
    ring = agent.call("uring.setup", entries=4, flags=["SQE128", "CQE32"])["ring"]
    agent.call("uring.pbuf_register", ring=ring, bgid=1, entries=2)
    out = agent.call("uring.run", ring=ring, timeout_ms=2000, sqes=[
        {"opcode": "URING_CMD", "fd": fd, "uring_cmd_flags": cmd_flags, "flags": sqe_flags,
         "buf_group": 1}])
    has = agent.call("probe.features", names=["uring_cmd_multishot"])["uring_cmd_multishot"]
    assert has["has"] is not None, has
    assert [c["res"] for c in out["cqes"]] == [-getattr(errno, by_multishot(key,
                                                                            has=has["has"]))]


def test_valid_multishot_on_a_file_is_eopnotsupp(agent: Agent, tmp_path: Path) -> None:
    has = agent.call("probe.features", names=["uring_cmd_multishot"])["uring_cmd_multishot"]
    if not has["has"]:
        pytest.skip(f"the host's kernel lacks IORING_URING_CMD_MULTISHOT ({has['how']})")
    fd = agent.call("fs.open", path=_file(tmp_path, b"x"))
    ring = agent.call("uring.setup", entries=4, flags=["SQE128", "CQE32"])["ring"]
    agent.call("uring.pbuf_register", ring=ring, bgid=1, entries=2)
    out = agent.call("uring.run", ring=ring, timeout_ms=2000, sqes=[
        {"opcode": "URING_CMD", "fd": fd, "uring_cmd_flags": ["MULTISHOT"],
         "flags": ["BUFFER_SELECT"], "buf_group": 1}])
    # Prep accepts it; a regular file has no ->uring_cmd.
    assert [c["res"] for c in out["cqes"]] == [-errno.EOPNOTSUPP]


@pytest.mark.skipif(not ROOT, reason="creds.run changes uid: needs root")
def test_creds_run_reports_credentials_and_agent_keeps_its_own(agent: Agent) -> None:
    before = agent.call("sys.caps")
    reply = agent.call("creds.run", uid=65534, gid=65534, groups=[], caps=[], memlock=1 << 20,
                     steps=[{"op": "sys.caps"}, {"op": "fs.open", "args": {"path": "/nonexist"}},
                            {"op": "no.such.op"}])
    assert reply["creds"]["uid"] == [65534] * 4 and reply["creds"]["gid"] == [65534] * 4
    assert reply["creds"]["groups"] == [] and int(reply["creds"]["cap_eff"], 16) == 0
    assert reply["creds"]["memlock"] == [1 << 20, 1 << 20]
    assert reply["steps"][1] == {"errno": "ENOENT"}
    assert "unknown op" in reply["steps"][2]["error"]
    assert agent.call("sys.caps")["effective"] == before["effective"]
    # A uid change that keeps a capability (PR_SET_KEEPCAPS) and a later drop.
    kept = agent.call("creds.run", uid=65534, caps=["CAP_IPC_LOCK"],
                    steps=[{"drop": ["CAP_IPC_LOCK"]}])
    assert int(kept["creds"]["cap_eff"], 16) == 1 << 14
    assert int(kept["steps"][0]["value"]["cap_eff"], 16) == 0


@pytest.mark.skipif(not ROOT, reason="creds.run changes uid: needs root")
def test_unverified_ring_charge_is_measured_and_observed(agent: Agent) -> None:
    """Where the version data says UNVERIFIED, the scenarios measure the ring charge (here
    on the host's kernel, as if it were of that range) and note it as observed."""
    known = expect(HOST, "ring_pages_charged")
    if known is UNVERIFIED:
        pytest.skip(f"the ring charge of {HOST} is itself unverified")
    between = next(r for r in EXPECTATIONS["ring_pages_charged"] if r.value is UNVERIFIED)
    kept: dict[str, object] = {}
    notes: list[str] = []
    uid = 40000 + (os.getpid() + 1) % 20000
    got = ring_pages(agent, between.low, lambda k, v: kept.update({k: v}),
                     notes.append, uid=uid)
    assert got == known, kept
    low = ".".join(map(str, between.low))
    assert notes == [f"ring_pages_charged = {known} on {low} (unverified: {between.why})"]
    outcomes = kept["ring_setup_by_memlock"]
    assert isinstance(outcomes, dict)
    assert [outcomes[p * 4096] for p in range(5)] == ["ENOMEM"] * known + ["ok"] * (5 - known)
