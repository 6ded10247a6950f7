"""Kernel-version ranges (scenarios/versions.py) and the suites' tables built from them."""

from __future__ import annotations

import itertools

import pytest

from scenarios.uring import expectations as uring
from scenarios.versions import (
    OPEN,
    UNVERIFIED,
    Built,
    Range,
    expect_in,
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


@pytest.mark.parametrize("table", [uring.EXPECTATIONS], ids=["uring"])
def test_tables_are_ordered_and_disjoint(table: dict[str, tuple[Range, ...]]) -> None:
    for key, ranges in table.items():
        for r in ranges:
            assert r.low < r.high, (key, r)
            assert r.why, (key, r)
        for a, b in itertools.pairwise(ranges):
            assert a.high <= b.low, (key, a, b)
        # Each range answers for its own bounds (on the builds it was measured on).
        for r in ranges:
            assert range_in(table, Built(r.low, "debian"), key) is r, (key, r)


def test_the_uring_open_ranges_lie_between_measured_kernels() -> None:
    """The answers measured on Debian's kernels, and nothing asserted between them."""
    charge, pins = "ring_pages_charged", "exempt_ring_pins_vm"
    debian = [Built(v, "debian") for v in ((7, 2, 6), (7, 2, 9))]
    for v in ((6, 16, 12), (6, 17, 13), (6, 18, 15), *debian):
        assert uring.expect(v, charge) == 2, v
    for v in ((7, 2, 11), (7, 2, 12), (7, 2, 13), (7, 3), (7, 3, 4)):
        assert uring.expect(Built(v, "debian"), charge) == 0, v
        assert uring.expect(Built(v, "debian-src"), charge) == 0, v
    for v in ((6, 1), (6, 12), (6, 16, 12), (6, 17, 13), (6, 18, 15)):
        assert uring.expect(v, pins) is True, v
    for v in ((7, 2, 6), (7, 2, 9), (7, 2, 11), (7, 2, 12), (7, 2, 13), (7, 3), (7, 3, 4)):
        assert uring.expect(Built(v, "debian"), pins) is False, v
    # Nothing bootable is served for 6.19-7.2.5, nor 7.2.10: observed there, not asserted.
    for v in ((6, 19), (6, 19, 14), (7, 0, 13), (7, 1, 13), (7, 2), (7, 2, 5)):
        assert uring.expect(v, charge) is UNVERIFIED, v
        assert uring.expect(v, pins) is UNVERIFIED, v
    assert uring.expect((7, 2, 10), charge) is UNVERIFIED


@pytest.mark.parametrize("build", ["git", "tree", "path", "worktree", ""])
@pytest.mark.parametrize("version", [(7, 2, 6), (7, 2, 9), (7, 2, 11), (7, 2, 13), (7, 3, 4)])
def test_a_debian_measurement_is_no_assertion_about_another_build(version: tuple[int, ...],
                                                                   build: str) -> None:
    """What Debian's 7.2.6 did is an observation about that build: a kernel of another
    build that calls itself 7.2.6 is measured and observed, never judged by it."""
    kernel = Built(version, build) if build else version
    for key in ("ring_pages_charged", "exempt_ring_pins_vm"):
        r = range_in(uring.EXPECTATIONS, kernel, key)
        assert r.value is UNVERIFIED, (key, r)
        assert "debian" in r.why and (build or "unknown") in r.why, r.why
    notes: list[str] = []
    assert uring.observe(kernel, "ring_pages_charged", 5, notes.append) == 5
    assert len(notes) == 1 and "unverified" in notes[0], notes


def test_what_was_read_from_the_source_holds_for_every_build() -> None:
    for build in ("git", "path", ""):
        kernel = Built((6, 16, 12), build) if build else (6, 16, 12)
        assert uring.expect(kernel, "ring_pages_charged") == 2
        assert uring.expect(kernel, "exempt_ring_pins_vm") is True


def test_nothing_is_assumed_past_the_newest_kernel_measured() -> None:
    for v in ((7, 3, 5), (7, 4), (8, 0)):
        for key in ("ring_pages_charged", "exempt_ring_pins_vm"):
            assert uring.expect(Built(v, "debian"), key) is UNVERIFIED, (v, key)
