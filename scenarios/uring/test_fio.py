"""fio as an outside client: io_uring_cmd on the generic device, libaio on the block device."""

from __future__ import annotations

from typing import Any

import pytest

from lab.vm.agent import Agent

COMMON = ["--rw=randrw", "--bs=4k", "--size=4M", "--iodepth=8", "--randrepeat=1",
          "--offset=256M", "--verify=crc32c", "--do_verify=1"]


def _job(agent: Agent, record: Any, args: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = agent.call("nvme.fio", args=args, timeout_s=240, call_timeout=300)
    record("fio", out["jobs"])
    assert out["status"] == 0, out["stderr"] or out.get("stdout")
    assert out["jobs"] and all(j["error"] == 0 for j in out["jobs"]), out["jobs"]
    moved = sum(j[rw]["io_bytes"] for j in out["jobs"] for rw in ("read", "write"))
    assert moved >= 4 << 20
    return out


@pytest.fixture
def engines(agent: Agent) -> list[str]:
    # fio is a host requirement (`lab doctor` checks it, `lab run` refuses to start
    # without it): its absence here is the harness's problem, never a SKIP.
    found: list[str] = agent.call("nvme.fio_engines")
    assert found, "fio is not installed on the host (the guest runs the host's tools)"
    return found


@pytest.mark.claim("nvme.fio_uring_cmd")
@pytest.mark.requires_feature("uring_cmd")
def test_fio_io_uring_cmd_on_generic_device(agent: Agent, nvme: dict[str, Any],
                                            engines: list[str], record: Any) -> None:
    assert "io_uring_cmd" in engines, "the host's fio has no io_uring_cmd engine (lab doctor)"
    _job(agent, record, ["--name=uring_cmd", f"--filename={nvme['fast'].generic}",
                         "--ioengine=io_uring_cmd", "--cmd_type=nvme", *COMMON])


@pytest.mark.claim("io_submit.fio_libaio")
@pytest.mark.requires_config("AIO")  # fio's libaio engine submits through io_submit
def test_fio_libaio_on_block_device(agent: Agent, nvme: dict[str, Any], engines: list[str],
                                    record: Any) -> None:
    assert "libaio" in engines, "the host's fio has no libaio engine (lab doctor)"
    _job(agent, record, ["--name=libaio", f"--filename={nvme['fast'].ns}", "--ioengine=libaio",
                         "--direct=1", *COMMON])
