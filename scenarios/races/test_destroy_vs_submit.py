"""io_destroy racing io_submit (reads/writes with O_DIRECT on NVMe, polls on a pipe)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from scenarios.races.params import FAST_SCRATCH_OFFSET, FLOORS, DestroyVsSubmit, ident, load

PARAMS = load(DestroyVsSubmit)


@pytest.mark.claim("io_destroy.race.submit")
@pytest.mark.requires_config("AIO")
@pytest.mark.parametrize("p", [PARAMS], ids=ident)
def test_destroy_vs_submit(run_loop: Callable[..., dict[str, Any]], nvme: dict[str, Any],
                           record: Any, raced: Any, p: DestroyVsSubmit) -> None:
    got = run_loop("race.destroy_vs_submit", path=nvme["fast"].ns, submitters=p.submitters,
                   nr_events=p.nr_events, kinds=list(p.kinds), polls_per_iter=p.polls_per_iter,
                   write_offset=FAST_SCRATCH_OFFSET, iterations=p.iterations,
                   seconds=p.seconds, max_target=p.max_target, opts=list(p.opts))
    record("params", {"submitters": p.submitters, "iterations": p.iterations,
                      "seconds": p.seconds, "kinds": list(p.kinds), "opts": list(p.opts)})
    raced(got, FLOORS["destroy_vs_submit"])
    n = got["iterations"]
    assert n > 0, "no iteration ran within the time bound"
    # Only success, EINVAL (context gone) and EAGAIN (ring full, reaped) are allowed.
    assert (got["submit_other"], got["getevents_other"]) == (0, 0), \
        f"unexpected errno {got['first_other_errno']}"
    assert (got["destroy_ok"], got["destroy_other"]) == (n, 0)
    # Each submitter's round ends with the first EINVAL it sees.
    assert got["submit_einval"] + got["getevents_einval"] == n * p.submitters
    # Accepted requests had all completed (signalled their eventfd) when io_destroy
    # returned, and none completed afterwards.
    assert got["late_completions"] == 0, f"{got['late_completions']} requests outlived io_destroy"
    assert got["unexplained_completions"] == 0
    assert got["bad_iterations"] == 0
    # The loop must have raced real requests, or it tested nothing.
    assert got["submit_ok"] > 0
