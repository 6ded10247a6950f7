"""Comparison on hand-made records: regressions, fixes, new splats, MISS, XFAIL, history."""

from __future__ import annotations

import datetime as dt

from records import rec, splat

from lab.results import known
from lab.results.compare import compare, flips, resolve, table


def keys(items: list[tuple[str, str]]) -> set[str]:
    return {f"{cell}|{scenario.split('::')[1]}" for cell, scenario in items}


BASE = [
    rec("test_regresses", "PASS"), rec("test_regresses", "PASS", "debian:6.1"),
    rec("test_fixed", "FAIL"), rec("test_still", "CRASH"), rec("test_lost", "PASS"),
    rec("test_removed", "PASS"), rec("test_known", "PASS"), rec("test_flaky", "FAIL"),
    rec("test_old_splat", "FAIL", splats=[splat("WARNING in io_destroy")]),
]
NEW = [
    rec("test_regresses", "FAIL", reason="assert 'EINVAL' == 'EBADF'"),
    rec("test_regresses", "PASS", "debian:6.1"),
    rec("test_fixed", "PASS"), rec("test_still", "HANG"), rec("test_lost", "MISS"),
    rec("test_added", "FAIL"), rec("test_known", "XFAIL"), rec("test_flaky", "PASS"),
    rec("test_old_splat", "FAIL", splats=[splat("WARNING in io_destroy"),
                                          splat("KASAN: use-after-free in io_submit_one",
                                                "KASAN")]),
]
FLAKY = known.parse('[[issue]]\ntest = "*test_flaky*"\ncell = "debian:7.2"\n'
                    'verdicts = ["FAIL"]\nintermittent = true\nwildcard_reason = "all of it"\n'
                    'url = "https://example.org/1"\nexpires = 2099-01-01\n', origin="k",
                    today=dt.date(2098, 6, 1))


def test_transitions() -> None:
    c = compare(BASE, NEW, issues=FLAKY)
    # A new test that fails is a regression too: it was never seen to pass.
    assert keys(c.regressions) == {"debian:7.2|test_regresses", "debian:7.2|test_added"}
    assert c.has_regression
    assert keys(c.fixes) == {"debian:7.2|test_fixed"}
    assert keys(c.cancelled_fixes) == {"debian:7.2|test_flaky"}  # intermittent known issue
    assert keys(c.still_failing) == {"debian:7.2|test_still", "debian:7.2|test_old_splat"}
    # Tested before, not now: MISS, a known issue's XFAIL, a test no longer there.
    assert keys(c.lost) == {"debian:7.2|test_lost", "debian:7.2|test_known",
                            "debian:7.2|test_removed"}
    assert keys(c.added) == {"debian:7.2|test_added"}
    assert keys(c.removed) == {"debian:7.2|test_removed"}
    assert list(c.new_splats) == ["KASAN: use-after-free in io_submit_one"]
    assert keys(c.new_splats["KASAN: use-after-free in io_submit_one"]) == {
        "debian:7.2|test_old_splat"}


def test_xfail_is_no_regression_and_no_fix_without_a_pass() -> None:
    c = compare([rec("t", "PASS"), rec("u", "XFAIL")], [rec("t", "XFAIL"), rec("u", "FAIL")])
    assert not c.regressions and not c.fixes
    assert keys(c.still_failing) == {"debian:7.2|u"}
    assert keys(c.lost) == {"debian:7.2|t"}  # a pass hidden by a known issue: lost
    # A known issue that is not intermittent: XFAIL -> PASS is a fix.
    c = compare([rec("u", "XFAIL")], [rec("u", "PASS")])
    assert keys(c.fixes) == {"debian:7.2|u"}


def test_fix_cancelled_by_the_record_s_own_intermittent_issue() -> None:
    base = rec("u", "XFAIL", data={"known_issue": {"intermittent": True, "url": "https://x"}})
    c = compare([base], [rec("u", "PASS")])
    assert not c.fixes and keys(c.cancelled_fixes) == {"debian:7.2|u"}


def test_no_regression_without_a_change() -> None:
    c = compare(BASE, BASE)
    assert not (c.regressions or c.fixes or c.added or c.removed or c.new_splats or c.lost)


def test_release_changes_compare_by_cell_and_are_listed() -> None:
    c = compare([rec("t", "PASS", release="7.2.12+deb14-amd64")],
                [rec("t", "FAIL", release="7.2.13+deb14-amd64")])
    assert keys(c.regressions) == {"debian:7.2|t"}
    assert c.releases == {"debian:7.2": ("7.2.12+deb14-amd64", "7.2.13+deb14-amd64")}


def test_cells_added_and_removed() -> None:
    c = compare([rec("t", "PASS"), rec("t", "PASS", "debian:6.1")],
                [rec("t", "PASS"), rec("t", "PASS", "debian-src:7.3/debug")])
    assert c.cells_added == ["debian-src:7.3/debug"] and c.cells_removed == ["debian:6.1"]


def test_duplicates_never_resolve_by_majority() -> None:
    """A FAIL, CRASH or HANG among several results for one key wins, and the mix is flaky
    with its counts (STYLE.md: a majority turned FAIL, PASS, PASS into a green merge)."""
    assert resolve(["PASS", "PASS", "FAIL"]) == ("FAIL", 1 / 3)
    assert resolve(["PASS", "FAIL"]) == ("FAIL", 0.5)
    assert resolve(["FAIL", "HANG", "HANG", "PASS"]) == ("HANG", 0.5)
    assert resolve(["SKIP", "PASS"]) == ("PASS", 0.5)
    t = table([rec("t", "PASS"), rec("t", "HANG"), rec("t", "HANG")])
    (status,) = t.values()
    assert (status.verdict, status.results, round(status.confidence, 2)) == ("HANG", 3, 0.67)
    assert status.flaky and status.shown == "HANG 2/3"


def test_a_fail_among_repetitions_wins_and_is_marked_flaky() -> None:
    reps = [rec("t", v, repeat=n) for n, v in enumerate(("PASS", "PASS", "FAIL", "PASS"), 1)]
    (status,) = table(reps).values()
    assert status.verdict == "FAIL" and status.record.repeat == 3
    assert status.flaky and status.shown == "FAIL 1/4" and status.counts == {"FAIL": 1,
                                                                            "PASS": 3}
    c = compare([rec("t", "PASS")], reps)
    assert keys(c.regressions) == {"debian:7.2|t"}
    (same,) = table([rec("t", "PASS", repeat=n) for n in (1, 2)]).values()
    assert not same.flaky and same.shown == "PASS"


def test_unstable_needs_two_flips_across_the_history() -> None:
    assert flips(["PASS", "FAIL", "PASS"]) == 2
    assert flips(["PASS", "SKIP", "PASS", "FAIL"]) == 1
    history = [[rec("t", "PASS"), rec("u", "PASS")], [rec("t", "FAIL"), rec("u", "PASS")]]
    c = compare([rec("t", "PASS"), rec("u", "PASS")], [rec("t", "FAIL"), rec("u", "FAIL")],
                history=history)
    assert {k[1].split("::")[1]: v for k, v in c.unstable.items()} == {
        "t": ["PASS", "FAIL", "PASS", "FAIL"]}
    assert keys(c.regressions) == {"debian:7.2|t", "debian:7.2|u"}


def test_records_from_before_cells_compare_by_kernel() -> None:
    old = rec("t", "PASS")
    old.cell = ""
    c = compare([old], [rec("t", "FAIL")])
    assert keys(c.regressions) == {"debian:7.2|t"}


def test_expiry_is_by_date() -> None:
    assert known.expired(FLAKY, dt.date(2099, 1, 2)) == FLAKY


GATED = ["SKIP", "INCONCLUSIVE", "INFRA", "MISS", "NOTRUN", "PASS"]


def test_every_way_into_a_failure_is_a_regression() -> None:
    """Anything that was not failing (SKIP, INCONCLUSIVE, INFRA, MISS, NOTRUN, PASS, or
    nothing at all: a new test or cell) and now fails gates the comparison."""
    for before in GATED:
        for after in ("FAIL", "CRASH", "HANG"):
            c = compare([rec("t", before)], [rec("t", after)])
            assert keys(c.regressions) == {"debian:7.2|t"}, (before, after)
            assert c.has_regression and not c.lost
    c = compare([rec("t", "PASS")], [rec("t", "PASS"), rec("t", "CRASH", "debian:6.1")])
    assert keys(c.regressions) == {"debian:6.1|t"} and c.cells_added == ["debian:6.1"]
    # A failure that stays one (or was a known issue's) is still failing, not new.
    c = compare([rec("t", "FAIL"), rec("u", "XFAIL")], [rec("t", "CRASH"), rec("u", "FAIL")])
    assert not c.regressions and keys(c.still_failing) == {"debian:7.2|t", "debian:7.2|u"}


def test_every_lost_check_is_listed_and_gates() -> None:
    for after in ("SKIP", "INCONCLUSIVE", "XFAIL", "MISS", "NOTRUN", "INFRA"):
        c = compare([rec("t", "PASS")], [rec("t", after)])
        assert keys(c.lost) == {"debian:7.2|t"} and not c.regressions, after
        assert c.has_lost_coverage
    # A failure no longer seen is a check lost too (FAIL -> SKIP hides it).
    c = compare([rec("t", "FAIL")], [rec("t", "SKIP")])
    assert keys(c.lost) == {"debian:7.2|t"}
    # Nothing tested before, nothing tested now: nothing lost.
    c = compare([rec("t", "SKIP"), rec("u", "INFRA")], [rec("t", "INFRA"), rec("u", "SKIP")])
    assert not c.lost and not c.has_lost_coverage


def test_the_exit_status_names_which_gate_failed() -> None:
    from lab.errors import COMPARE_EXIT_CODES, EXIT_LOST_COVERAGE, EXIT_OK, EXIT_TEST_FAILED
    from lab.results.compare import exit_code

    assert exit_code(compare([rec("t", "PASS")], [rec("t", "PASS")])) == EXIT_OK
    assert exit_code(compare([rec("t", "PASS")], [rec("t", "SKIP")])) == EXIT_LOST_COVERAGE
    both = compare([rec("t", "PASS"), rec("u", "PASS")], [rec("t", "SKIP"), rec("u", "FAIL")])
    assert exit_code(both) == EXIT_TEST_FAILED  # the regression is the worse news
    assert {EXIT_OK, EXIT_TEST_FAILED, EXIT_LOST_COVERAGE} <= set(COMPARE_EXIT_CODES)
