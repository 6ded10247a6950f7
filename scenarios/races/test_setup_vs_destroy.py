"""io_setup and io_destroy racing lookups of the ids being destroyed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from scenarios.races.params import FLOORS, SetupVsDestroy, ident, load

PARAMS = load(SetupVsDestroy)


@pytest.mark.claim("io_destroy.race.setup")
@pytest.mark.saturates_cpus("four threads spin io_setup/io_destroy and lookups on both vCPUs")
@pytest.mark.requires_config("AIO")
@pytest.mark.guest_only("aio-nr counts every process's contexts: on a host, others' come and go")
@pytest.mark.parametrize("p", [PARAMS], ids=ident)
def test_setup_destroy_lookup(run_loop: Callable[..., dict[str, Any]], aio_nr: Any,
                              record: Any, raced: Any, p: SetupVsDestroy) -> None:
    before = aio_nr()
    got = run_loop("race.setup_vs_destroy", creators=p.creators, lookers=p.lookers,
                   slots=p.slots, nr_events=p.nr_events, iterations=p.iterations,
                   seconds=p.seconds, opts=list(p.opts))
    raced(got, FLOORS["setup_vs_destroy"])
    after = aio_nr()
    record("aio_nr", {"before": before, "after": after})
    assert got["iterations"] > 0, "no context was created within the time bound"
    others = {k: got[k] for k in ("setup_other", "destroy_other", "submit_other",
                                  "getevents_other")}
    assert not any(others.values()), f"{others}: first errno {got['first_other_errno']}"
    # Every context has one owner: its single io_destroy succeeds.
    assert got["destroy_einval"] == 0
    assert got["final_destroy_failed"] == 0
    assert got["setup_ok"] == got["destroy_ok"] + got["final_destroy_ok"]
    assert got["submit_ok"] + got["getevents_ok"] > 0, "the lookers never reached a context"
    assert after == before, f"aio-nr went from {before} to {after}"
