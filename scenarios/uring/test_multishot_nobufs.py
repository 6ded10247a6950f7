"""A multishot ublk fetch that finds no provided buffer: the group is empty, or its ring was
unregistered while the fetch was armed (the buffer-list lifetime the patch's review was
about).  Either way the fetch must end with -ENOBUFS and no F_MORE, the kernel must report
nothing (the lab fails a test on any splat; KASAN watches on the debug variant), and the
request that found no buffer must not be lost: a second fetch serves it.
"""

from __future__ import annotations

from typing import Any

import pytest

from lab.vm.agent import Agent

# A kernel without ublk SKIPs, and so does one whose ublk_drv has no batch fetch
# (UBLK_U_CMD_GET_FEATURES: UBLK_F_BATCH_IO).
pytestmark = [pytest.mark.requires_config("BLK_DEV_UBLK"),
              pytest.mark.requires_feature("ublk_batch_fetch"),
              pytest.mark.guest_only("the agent adds a ublk device to the kernel")]

READS = 2


@pytest.mark.parametrize("mode", [
    pytest.param("empty", marks=pytest.mark.claim("uring_cmd.multishot.enobufs"), id="empty-group"),
    pytest.param("unregister", marks=pytest.mark.claim("uring_cmd.multishot.unregister_bufring"),
                 id="unregistered-ring"),
])
def test_fetch_without_buffers_ends_with_enobufs(agent: Agent, mode: str, record: Any) -> None:
    out = agent.call("ublk.fetch_nobufs", mode=mode, nreads=READS, timeout_ms=60_000,
                     call_timeout=180)
    record("ublk", out)
    assert out["first_ended"], f"the first fetch did not end: {out}"
    final = out["first_final"]
    assert final is not None and final["errno"] == "ENOBUFS", final
    # Its one CQE was that last one: nothing was delivered without a buffer.
    assert out["first_cqes"] == 1 and out["first_with_more"] == 0, out
    # The second fetch served every read, with the server's data.
    assert out["served_all"] and not out.get("reader_stuck"), out
    assert out["reads"] == [4096] * READS and out["mismatched_reads"] == 0, out
    assert out["fetch_submissions"] == 2, out
