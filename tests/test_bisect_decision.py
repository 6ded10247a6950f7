"""`lab bisect`'s pure parts: the decision table (syzkaller's bisectionDecision,
stricter on good), the confidence and the sequential test, what one run means for a
target (`--bad-if`), test ids without their cell, and the list search.

Whole bisections with fakes at the seams are tests/test_bisect.py; the real one is
tests/test_bisect_real.py.
"""

from __future__ import annotations

import math

import pytest

from lab.bisect.classify import BadIf, Observed, classify, default_bad_if, judge, targets_of
from lab.bisect.decision import (
    Counts,
    Outcome,
    Policy,
    Verdict,
    decision,
    estimate_p,
    good_runs_needed,
    next_step,
    step_confidence,
)
from lab.bisect.search import ListSearch
from lab.errors import UserError
from lab.results.cell import cell_label, scenario_of

G, B, S = Verdict.GOOD, Verdict.BAD, Verdict.SKIP


# --- the decision (syzkaller's bisectionDecision, stricter on good) ---------------------------

@pytest.mark.parametrize(("total", "bad", "good", "infra", "single", "want"), [
    (1, 1, 0, 0, True, B),    # by default a failure means bad
    (1, 0, 1, 0, True, G),
    (1, 0, 0, 1, True, S),    # INFRA: skip
    (1, 0, 0, 0, True, S),    # an unrelated splat: skip
    (10, 2, 8, 0, False, B),  # max(2, 10/6) = 2
    (10, 1, 9, 0, False, S),  # one failure is not enough with several runs...
    (10, 0, 10, 0, False, G),
    (10, 0, 9, 1, False, G),  # ...infra runs do not count against good
    (10, 0, 9, 0, False, S),  # ...but an unrelated splat does: good needs all passing
    (10, 0, 4, 6, False, S),  # fewer than half the runs tested anything
    (20, 3, 17, 0, False, S),  # max(2, 20/6) = 4
    (20, 4, 16, 0, False, B),
    (14, 3, 5, 6, False, B),  # (14 - 6) / 6 rounds up to 2
    (0, 0, 0, 0, False, S),
    (10, 0, 0, 10, False, S),
])
def test_decision_table(total: int, bad: int, good: int, infra: int, single: bool,
                        want: Verdict) -> None:
    assert decision(total, bad, good, infra, single=single) == want


def test_confidence_and_the_estimate_of_p() -> None:
    assert step_confidence(G, 10, 0.3) == pytest.approx(1 - 0.7 ** 10)
    assert step_confidence(B, 0, 0.3) == 1.0 and step_confidence(G, 1, 1.0) == 1.0
    # Wilson's lower bound, not the ratio: 6 of 20 is 0.19, 3 of 3 only 0.65.
    assert estimate_p(Counts(total=20, bad=6, good=14)) == pytest.approx(0.188, abs=0.005)
    assert estimate_p(Counts(total=3, bad=3)) == pytest.approx(0.65, abs=0.01)
    assert estimate_p(Counts()) == 1.0
    assert good_runs_needed(0.3, 0.98) == math.ceil(math.log(0.02) / math.log(0.7))
    assert good_runs_needed(1.0, 0.99) == 1


def _counts(*outcomes: str) -> Counts:
    return Counts.of(Outcome(o) for o in outcomes)


def test_sequential_runs_stop_extend_and_give_up() -> None:
    policy = Policy(runs=10, p=0.3, target=0.98)
    need = good_runs_needed(0.3, 0.98)  # 11: more than the 10 planned
    assert next_step(_counts(*["good"] * 9), policy) is None
    assert next_step(_counts(*["good"] * 10), policy) == G  # the plan is done
    assert next_step(_counts(*["good"] * 5), Policy(runs=20, p=0.3, target=0.98)) is None
    assert next_step(_counts(*["good"] * need), Policy(runs=20, p=0.3, target=0.98)) == G
    assert next_step(_counts("good", "bad", "good", "bad"), policy) == B  # settled early
    # One failure among passes: the runs double before anything is decided...
    assert next_step(_counts("bad", *["good"] * 9), policy) is None
    # ...and end as skip once failures can no longer reach max(2, n/6).
    assert next_step(_counts("bad", *["good"] * 19), policy) == S
    assert next_step(_counts("other", *["good"] * 19), policy) == S
    # Without early stops (the bad endpoint, which estimates p), all runs happen.
    fixed = Policy(runs=5, early=False, extend=False)
    assert next_step(_counts("bad", "bad"), fixed) is None
    assert next_step(_counts("bad", "bad", "good", "bad", "bad"), fixed) == B
    assert next_step(_counts(), Policy(runs=1)) is None
    assert next_step(_counts("bad"), Policy(runs=1)) == B


# --- one run's meaning --------------------------------------------------------------------

T = "scenarios/aio/test_io_destroy.py::test_destroy_twice_is_einval"
SPLAT = "kernel splat during the test: WARNING in kill_ioctx\nWARNING in kill_ioctx"


def _r(verdict: str, reason: str = "", splats: tuple[str, ...] = ()) -> Observed:
    return Observed(verdict=verdict, reason=reason, splats=splats)


@pytest.mark.parametrize(("result", "bad_if", "want"), [
    (_r("FAIL", "assert 'ENOENT' == 'EINVAL'"), "fail", "bad"),
    (_r("HANG", "aio.destroy did not return"), "fail", "bad"),
    (_r("PASS"), "fail", "good"),
    (_r("FAIL", SPLAT, ("WARNING in kill_ioctx",)), "fail", "other"),  # only a splat
    (_r("CRASH", "kernel died", ("BUG: KASAN: use-after-free in aio_read",)), "fail", "other"),
    (_r("INFRA", "boot timeout"), "fail", "infra"),
    (_r("SKIP", "lacks CONFIG_AIO"), "fail", "infra"),
    (_r("NOTRUN"), "fail", "infra"),
    (None, "fail", "infra"),
    (_r("CRASH", "kernel died"), "crash", "bad"),
    (_r("FAIL", "assert 1 == 2"), "crash", "good"),  # no crash: not what bad means
    (_r("FAIL", SPLAT, ("WARNING in kill_ioctx",)), "crash", "other"),
    (_r("FAIL", SPLAT, ("WARNING in kill_ioctx",)), "splat:WARNING in kill_*", "bad"),
    (_r("CRASH", "", ("BUG: KASAN: use-after-free in aio_read",)), "splat:WARNING*", "other"),
    (_r("CRASH", "kernel died"), "splat:WARNING*", "other"),  # died without a report
    (_r("FAIL", "assert 1 == 2"), "splat:WARNING*", "good"),
])
def test_judge(result: Observed | None, bad_if: str, want: str) -> None:
    assert judge(result, BadIf.parse(bad_if)).outcome == Outcome(want)


def test_a_run_is_bad_if_any_target_is_and_other_tests_do_not_vote() -> None:
    results = {T: _r("FAIL", "errno"), "x": _r("INFRA"), "y": _r("FAIL", "unrelated")}
    assert classify(results, (T, "x"), BadIf("fail")).outcome == Outcome.BAD
    assert classify({T: _r("PASS"), "y": _r("FAIL", "nope")}, (T,),
                    BadIf("fail")).outcome == Outcome.GOOD
    mixed = classify({T: _r("PASS"), "x": _r("FAIL", SPLAT, ("WARNING in kill_ioctx",))},
                     (T, "x"), BadIf("fail"))
    assert mixed.outcome == Outcome.OTHER and mixed.foreign == ("WARNING in kill_ioctx",)


def test_what_bad_means_by_default_comes_from_the_bad_endpoint() -> None:
    assert default_bad_if([{T: _r("FAIL", "errno")}]) == BadIf("fail")
    assert default_bad_if([{T: _r("CRASH", "died")}]) == BadIf("crash")
    title = "BUG: KASAN: slab-use-after-free in io_ring_exit_work [io_uring]"
    got = default_bad_if([{T: _r("CRASH", "died", (title,))}])
    assert got is not None and got.kind == "splat"
    assert judge(_r("CRASH", "", (title,)), got).outcome == Outcome.BAD  # brackets escaped
    assert default_bad_if([{T: _r("PASS")}]) is None
    runs = [{T: _r("FAIL", "errno"), "x": _r("PASS")}, {T: _r("PASS"), "x": _r("FAIL", "e")}]
    assert targets_of(runs, BadIf("fail")) == (T, "x")
    with pytest.raises(UserError, match="fail, crash or splat"):
        BadIf.parse("sometimes")


def test_test_ids_lose_their_cell_parameter() -> None:
    cell = cell_label("git:/src/linux@" + "a" * 40, "base")
    assert scenario_of(f"{T}[{cell}]", cell) == T
    assert scenario_of(f"x.py::t[{cell}-128]", cell) == "x.py::t[128]"
    assert scenario_of("x.py::t[debian:7.2-1]", "debian:7.2") == "x.py::t[1]"


# --- the list search ------------------------------------------------------------------------

def test_list_search_finds_the_first_bad_and_reports_a_skipped_range() -> None:
    points = [f"v{i}" for i in range(10)]
    s = ListSearch(points)
    nxt = s.start("v9", "v0")
    seen = []
    while nxt.point is not None:
        seen.append(nxt.point)
        nxt = s.mark(nxt.point, B if int(nxt.point[1:]) >= 6 else G)
    assert nxt.first_bad == "v6" and len(seen) <= 4
    s = ListSearch(points)
    nxt = s.start("v9", "v0")
    while nxt.point is not None:
        i = int(nxt.point[1:])
        nxt = s.mark(nxt.point, S if i in (5, 6) else B if i >= 6 else G)
    assert nxt.only_skipped == ("v5", "v6", "v7")
