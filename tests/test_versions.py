"""Kernel-version ranges (scenarios/versions.py) and the suites' tables built from them."""

from __future__ import annotations

import itertools

import pytest

from scenarios.aio import expectations as aio
from scenarios.uring import expectations as uring
from scenarios.versions import (
    OPEN,
    UNVERIFIED,
    Range,
    expect_in,
    lacks_in,
    observe_in,
    range_in,
)

TABLE = {
    "charge": (
        Range((6, 14), (6, 19), 2, "measured"),
        Range((6, 19), (7, 2, 6), UNVERIFIED, "nothing bootable"),
        Range((7, 2, 6), OPEN, 0, "measured"),
    ),
}


@pytest.mark.parametrize(("version", "want"), [
    ((6, 14), 2), ((6, 14, 0), 2), ((6, 18), 2), ((6, 18, 15), 2), ((6, 18, 44), 2),
    ((6, 19), UNVERIFIED), ((6, 19, 6), UNVERIFIED), ((7, 0, 13), UNVERIFIED),
    ((7, 1, 13), UNVERIFIED), ((7, 2), UNVERIFIED), ((7, 2, 0), UNVERIFIED),
    ((7, 2, 5), UNVERIFIED),
    ((7, 2, 6), 0), ((7, 2, 12), 0), ((7, 2, 13), 0), ((7, 3), 0), ((7, 3, 4), 0),
    ((10,), 0),
])
def test_bounds_with_a_patch_level(version: tuple[int, ...], want: object) -> None:
    assert expect_in(TABLE, version, "charge") == want


def test_below_every_range_is_a_key_error() -> None:
    with pytest.raises(KeyError, match=r"charge on 6\.13\.9"):
        expect_in(TABLE, (6, 13, 9), "charge")


def test_observe_returns_the_expectation_where_it_is_measured() -> None:
    notes: list[str] = []
    # A measured range asserts its own value, whatever was measured: no note.
    assert observe_in(TABLE, (6, 18, 15), "charge", 0, notes.append) == 2
    assert observe_in(TABLE, (7, 2, 6), "charge", 2, notes.append) == 0
    assert notes == []


def test_observe_notes_the_measured_value_where_unverified() -> None:
    notes: list[str] = []
    assert observe_in(TABLE, (7, 2, 5), "charge", 1, notes.append) == 1
    assert notes == ["charge = 1 on 7.2.5 (unverified: nothing bootable)"]


def test_features_with_a_patch_level() -> None:
    features = {"f": ((7, 2, 6), "appeared in 7.2.6")}
    assert lacks_in(features, (7, 2, 5), "f") == "appeared in 7.2.6"
    assert lacks_in(features, (7, 2), "f") == "appeared in 7.2.6"
    assert lacks_in(features, (7, 2, 6), "f") is None
    assert lacks_in(features, (7, 3), "f") is None


@pytest.mark.parametrize("table", [aio.EXPECTATIONS, uring.EXPECTATIONS],
                         ids=["aio", "uring"])
def test_tables_are_ordered_and_disjoint(table: dict[str, tuple[Range, ...]]) -> None:
    for key, ranges in table.items():
        for r in ranges:
            assert r.low < r.high, (key, r)
            assert r.why, (key, r)
        for a, b in itertools.pairwise(ranges):
            assert a.high <= b.low, (key, a, b)
        # Each range answers for its own bounds.
        for r in ranges:
            assert range_in(table, r.low, key) is r, (key, r)


def test_the_uring_open_ranges_lie_between_measured_kernels() -> None:
    """The answers measured on Debian's kernels, and nothing asserted between them."""
    charge, pins = "ring_pages_charged", "exempt_ring_pins_vm"
    for v in ((6, 16, 12), (6, 17, 13), (6, 18, 15), (7, 2, 6), (7, 2, 9)):
        assert uring.expect(v, charge) == 2, v
    for v in ((7, 2, 11), (7, 2, 12), (7, 2, 13), (7, 3), (7, 3, 4)):
        assert uring.expect(v, charge) == 0, v
    for v in ((6, 1), (6, 12), (6, 16, 12), (6, 17, 13), (6, 18, 15)):
        assert uring.expect(v, pins) is True, v
    for v in ((7, 2, 6), (7, 2, 9), (7, 2, 11), (7, 2, 12), (7, 2, 13), (7, 3), (7, 3, 4)):
        assert uring.expect(v, pins) is False, v
    # Nothing bootable is served for 6.19-7.2.5, nor 7.2.10: observed there, not asserted.
    for v in ((6, 19), (6, 19, 14), (7, 0, 13), (7, 1, 13), (7, 2), (7, 2, 5)):
        assert uring.expect(v, charge) is UNVERIFIED, v
        assert uring.expect(v, pins) is UNVERIFIED, v
    assert uring.expect((7, 2, 10), charge) is UNVERIFIED
