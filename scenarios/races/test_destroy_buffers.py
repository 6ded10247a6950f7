"""io_destroy must not return while in-flight reads can still write into user buffers.

Between 3.11 and 3.14 io_destroy returned without waiting for the context's
I/O (fixed by e02ba72aabfa, "aio: block io_destroy() until all context
requests are completed"): a program reusing its buffers after io_destroy saw
them overwritten later.  Slow O_DIRECT reads from the throttled NVMe keep
reads in flight at the destroy; the C loop then refills the buffers at once
and watches them for longer than the reads would still take.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from scenarios.races.params import FLOORS, SLOW_IOPS, DestroyBuffers, ident, load

PARAMS = load(DestroyBuffers)


@pytest.mark.claim("io_destroy.race.buffers")
@pytest.mark.requires_config("AIO")
@pytest.mark.parametrize("p", [PARAMS], ids=ident)
def test_buffers_quiet_after_destroy(run_loop: Callable[..., dict[str, Any]],
                                     nvme: dict[str, Any], raced: Any,
                                     p: DestroyBuffers) -> None:
    # Watch the buffers 1.5x as long as all reads of a round would need, plus slack.
    settle_ms = 1500.0 * p.nbufs / SLOW_IOPS + 300.0
    got = run_loop("race.destroy_buffers", path=nvme["slow"].ns, nbufs=p.nbufs,
                   bufsize=p.bufsize, stride=p.stride, rounds=p.iterations,
                   seconds=p.seconds, settle_ms=settle_ms, opts=list(p.opts))
    raced(got, FLOORS["destroy_buffers"])
    n = got["iterations"]
    assert n > 0, "no round ran within the time bound"
    assert got["first_other_errno"] is None
    assert got["submitted"] == n * p.nbufs
    # Reads must have been in flight at the destroy, or nothing was tested.
    assert got["pending_at_destroy"] > 0, "the throttled device finished every read early"
    assert got["completed_by_destroy"] == got["submitted"]
    assert got["unfinished_at_destroy"] == 0, "buffers not yet filled when io_destroy returned"
    assert got["modified_after_destroy"] == 0, "buffers written after io_destroy returned"
    assert got["late_completions"] == 0
    # It waited for the pending reads: at 25 IOPS that takes at least pending/25 s
    # (half that, for QEMU's throttling bursts).
    assert got["destroy_ns_total"] / 1e9 >= got["pending_at_destroy"] / SLOW_IOPS / 2
