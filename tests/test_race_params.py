"""The race scenarios' parameters: the detection power and the floors that use it."""

from __future__ import annotations

import pytest

from scenarios.races.params import (
    FLOORS,
    HAMMER,
    POWER_P,
    ConcurrentDestroy,
    ident,
    load,
    power,
)


def test_power_is_the_chance_that_some_overlap_showed_the_bug() -> None:
    assert power(0) == 0.0
    assert power(1) == pytest.approx(POWER_P)
    assert power(7) == pytest.approx(1 - (1 - POWER_P) ** 7)
    assert power(29) > 0.95 > power(28)  # with p = 0.1
    assert power(3, p=1.0) == 1.0  # a bug every overlap shows
    assert power(-1) == 0.0


def test_a_passing_concurrent_destroy_had_a_real_chance() -> None:
    # Issue 23: it passed on 1-2 overlapped rounds (a 10-19% chance at p = 0.1).  Now it
    # hammers, and fewer overlaps than an even chance is INCONCLUSIVE.
    floor = FLOORS["concurrent_destroy"]
    assert power(floor.rounds) >= 0.5, floor
    assert load(ConcurrentDestroy, "").opts == HAMMER and "hammer" in HAMMER


def test_the_default_technique_stays_out_of_the_test_id() -> None:
    assert ident(load(ConcurrentDestroy, "")) == "threads4-iterations300-seconds15"
    assert ident(load(ConcurrentDestroy, "opts=pin")).endswith("-opts-pin")
