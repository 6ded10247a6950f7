"""io_destroy of one context from several threads at once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from scenarios.races.params import FLOORS, ConcurrentDestroy, ident, load

PARAMS = load(ConcurrentDestroy)


@pytest.mark.claim("io_destroy.race.concurrent")
@pytest.mark.requires_config("AIO")
@pytest.mark.guest_only("aio-nr counts every process's contexts: on a host, others' come and go")
@pytest.mark.parametrize("p", [PARAMS], ids=ident)
def test_exactly_one_destroy_wins(run_loop: Callable[..., dict[str, Any]], aio_nr: Any,
                                  raced: Any, p: ConcurrentDestroy) -> None:
    before = aio_nr()
    got = run_loop("race.concurrent_destroy", threads=p.threads, polls=p.polls,
                   iterations=p.iterations, seconds=p.seconds, opts=list(p.opts))
    raced(got, FLOORS["concurrent_destroy"])
    n = got["iterations"]
    assert n > 0, "no iteration ran within the time bound"
    assert got["destroy_other"] == 0, f"unexpected errno {got['first_other_errno']}"
    assert (got["no_winner"], got["many_winners"]) == (0, 0)
    assert got["destroy_ok"] == n
    assert got["destroy_einval"] == n * (p.threads - 1)
    assert got["polls_submitted"] == n * p.polls
    assert aio_nr() == before
