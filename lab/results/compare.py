"""Two runs compared, SQUAD's way: one table (cell, scenario) → status per run, transitions as sets.

A run's records become one table keyed by (cell, scenario): the scenario is the
test id without the cell's parameter, so the same test on the same cell meets
itself across runs whatever the kernel's release is today (a nightly
``debian:7.2`` is a newer package tomorrow; the release change is listed).
Several results for one key (the repetitions of ``--repeat``, a shard run twice)
never resolve by majority: the worst verdict wins, so a FAIL, CRASH or HANG among
them is the key's verdict, and a mix is flaky with its counts ("FAIL 1/4").

Regressions, fixes and the rest are sets of (before, after) verdict pairs handed
to one generic function.  An intermittent known issue cancels a fix: a flaky
test that passed once is not fixed.  Two gates: a regression is any way into
FAIL, CRASH or HANG from something that was not a failure (a new test or cell
included); a lost check is a test tested before (PASS, or a failure) and not now
(SKIP, INCONCLUSIVE, INFRA, MISS, NOTRUN, gone), or a pass now XFAIL.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from lab.errors import EXIT_LOST_COVERAGE, EXIT_OK, EXIT_TEST_FAILED
from lab.results import known as known_mod
from lab.results.cell import label_of, scenario_of
from lab.results.record import Record
from lab.results.verdict import FAILED, TESTED, VERDICTS, Verdict

Key = tuple[str, str]  # (cell label, scenario)

PASS, XFAIL = Verdict.PASS.value, Verdict.XFAIL.value
_FAILED = {v.value for v in FAILED}
_BAD = _FAILED | {XFAIL}  # failing, known or not

# Into a failure from anything that was not one (PASS, SKIP, INCONCLUSIVE, INFRA, MISS,
# NOTRUN): a check that now fails.  A new test or cell that fails is one too (compare).
REGRESSIONS = frozenset((a, b) for a in VERDICTS if a not in _BAD for b in _FAILED)
FIXES = frozenset((v, PASS) for v in _BAD)
STILL_FAILING = frozenset((a, b) for a in _BAD for b in _BAD)
# Tested before, not this time: a pass or a failure that nobody saw now (SKIP,
# INCONCLUSIVE, INFRA, MISS, NOTRUN), and a pass a known issue's XFAIL now stands for.
# Neither a regression nor a fix, but a check lost: it gates too (lab.errors).
_TESTED = {v.value for v in TESTED}
LOST = frozenset((a, b) for a in _TESTED for b in VERDICTS if b not in _TESTED) | {(PASS, XFAIL)}


def cell_of(record: Record) -> str:
    """The record's cell; runs from before cells existed name it by their kernel."""
    return record.cell or (label_of(record.kernel) if record.kernel else "")


def key_of(record: Record) -> Key:
    cell = cell_of(record)
    return cell, scenario_of(record.test, cell)


@dataclass(frozen=True)
class Status:
    """One key's verdict in one run, from every result the run has for it."""

    verdict: str
    confidence: float  # the verdict's share of the results for this key
    results: int
    record: Record  # one record with that verdict (reason, splats, kernel)
    counts: dict[str, int] = field(default_factory=dict)  # verdict → results, worst first

    @property
    def flaky(self) -> bool:
        """The results disagree (a repeated test that failed only sometimes)."""
        return len(self.counts) > 1

    @property
    def shown(self) -> str:
        """The verdict as the report and the comparison show it: "FAIL 1/4" when flaky."""
        if not self.flaky:
            return self.verdict
        return f"{self.verdict} {self.counts[self.verdict]}/{self.results}"


def resolve(verdicts: Sequence[str]) -> tuple[str, float]:
    """The verdict of several results for one test, and its share of them.

    Never a majority: the worst verdict wins (VERDICTS order), so one FAIL, CRASH or
    HANG among passes is the test's verdict (a verdict this version does not know
    counts as the worst: it is shown, not hidden).
    """
    winner = min(set(verdicts), key=_rank)
    return winner, Counter(verdicts)[winner] / len(verdicts)


def counts(verdicts: Iterable[str]) -> dict[str, int]:
    """How many results had each verdict, worst first."""
    seen = Counter(verdicts)
    return {v: seen[v] for v in sorted(seen, key=_rank)}


def flaky_text(verdicts: Sequence[str]) -> str:
    """ "FAIL 1/4" for results that disagree, "" for results that agree."""
    verdict, _ = resolve(verdicts)
    n = Counter(verdicts)
    return f"{verdict} {n[verdict]}/{len(verdicts)}" if len(n) > 1 else ""


def _rank(verdict: str) -> int:
    return VERDICTS.index(verdict) if verdict in VERDICTS else -1


def table(records: Iterable[Record]) -> dict[Key, Status]:
    grouped: dict[Key, list[Record]] = {}
    for r in records:
        grouped.setdefault(key_of(r), []).append(r)
    out = {}
    for key, recs in grouped.items():
        # A record `lab merge` made of several results counts as each of them.
        verdicts = [v for r in recs for v in _verdicts(r)]
        verdict, confidence = resolve(verdicts)
        out[key] = Status(verdict, confidence, len(verdicts),
                          next(r for r in recs if r.verdict == verdict), counts(verdicts))
    return out


def _verdicts(record: Record) -> list[str]:
    merged = record.data.get("merged")
    seen = merged.get("verdicts") if isinstance(merged, dict) else None
    if isinstance(seen, list) and seen and record.verdict in seen:
        return [str(v) for v in seen]
    return [record.verdict]


def transitions(base: dict[Key, Status], new: dict[Key, Status],
                pairs: frozenset[tuple[str, str]]) -> list[Key]:
    """The keys in both runs whose (base, new) verdicts are one of ``pairs``, sorted."""
    return sorted(k for k in base.keys() & new.keys()
                  if (base[k].verdict, new[k].verdict) in pairs)


def _titles(records: Iterable[Record]) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {}
    for r in records:
        for s in r.splats:
            title = str(s.get("title") or s.get("kind") or "?")
            out.setdefault(title, []).append(r)
    return out


def flips(verdicts: Sequence[str]) -> int:
    """How often a sequence of verdicts changes between passing and failing (others skipped)."""
    states = [v == PASS for v in verdicts if v == PASS or v in _BAD]
    return sum(a != b for a, b in itertools.pairwise(states))


@dataclass
class Comparison:
    """What changed from ``base`` to ``new``; keys are (cell, scenario)."""

    base: dict[Key, Status]
    new: dict[Key, Status]
    regressions: list[Key] = field(default_factory=list)
    fixes: list[Key] = field(default_factory=list)
    cancelled_fixes: list[Key] = field(default_factory=list)  # intermittent known issue
    still_failing: list[Key] = field(default_factory=list)
    lost: list[Key] = field(default_factory=list)
    added: list[Key] = field(default_factory=list)
    removed: list[Key] = field(default_factory=list)
    new_splats: dict[str, list[Key]] = field(default_factory=dict)
    unstable: dict[Key, list[str]] = field(default_factory=dict)
    cells_added: list[str] = field(default_factory=list)
    cells_removed: list[str] = field(default_factory=list)
    releases: dict[str, tuple[str, str]] = field(default_factory=dict)  # cell → (base, new)

    @property
    def has_regression(self) -> bool:
        return bool(self.regressions)

    @property
    def has_lost_coverage(self) -> bool:
        return bool(self.lost)


def exit_code(c: Comparison) -> int:
    """`lab compare`'s exit status (lab.errors.COMPARE_EXIT_CODES): 1 for a regression,
    else 5 for a check lost, else 0."""
    if c.has_regression:
        return EXIT_TEST_FAILED
    if c.has_lost_coverage:
        return EXIT_LOST_COVERAGE
    return EXIT_OK


def _releases(statuses: dict[Key, Status]) -> dict[str, str]:
    out: dict[str, set[str]] = {}
    for (cell, _), st in statuses.items():
        release = st.record.kernel.get("release")
        if release:
            out.setdefault(cell, set()).add(str(release))
    return {cell: ", ".join(sorted(rs)) for cell, rs in out.items()}


def _intermittent(key: Key, status: Status, issues: list[known_mod.KnownIssue]) -> bool:
    if status.record.data.get("known_issue", {}).get("intermittent"):
        return True
    cell, _ = key
    return any(i.intermittent and i.matches(status.record.test, cell) for i in issues)


def compare(base_records: Iterable[Record], new_records: Iterable[Record], *,
            issues: Sequence[known_mod.KnownIssue] = (),
            history: Sequence[Iterable[Record]] = ()) -> Comparison:
    """The difference from ``base`` to ``new``; ``history`` is older runs, oldest first."""
    base, new = table(base_records), table(new_records)
    c = Comparison(base=base, new=new)
    c.regressions = sorted([*transitions(base, new, REGRESSIONS),
                            *(k for k in new.keys() - base.keys() if new[k].verdict in _FAILED)])
    issue_list = list(issues)
    for key in transitions(base, new, FIXES):
        if _intermittent(key, base[key], issue_list) or _intermittent(key, new[key], issue_list):
            c.cancelled_fixes.append(key)
        else:
            c.fixes.append(key)
    c.still_failing = transitions(base, new, STILL_FAILING)
    # A test that passed (or failed) and is not in the new run at all: lost as well.
    c.lost = sorted([*transitions(base, new, LOST),
                     *(k for k in base.keys() - new.keys() if base[k].verdict in _TESTED)])
    c.added = sorted(new.keys() - base.keys())
    c.removed = sorted(base.keys() - new.keys())
    base_titles = _titles(s.record for s in base.values())
    for title, recs in sorted(_titles(s.record for s in new.values()).items()):
        if title not in base_titles:
            c.new_splats[title] = sorted({key_of(r) for r in recs})
    base_cells = {cell for cell, _ in base}
    new_cells = {cell for cell, _ in new}
    c.cells_added = sorted(new_cells - base_cells)
    c.cells_removed = sorted(base_cells - new_cells)
    before, after = _releases(base), _releases(new)
    c.releases = {cell: (before[cell], after[cell]) for cell in sorted(before.keys() & after.keys())
                  if before[cell] != after[cell]}
    runs = [table(h) for h in history] + [base, new]
    for key in sorted(new):
        seq = [run[key].verdict for run in runs if key in run]
        if flips(seq) >= 2:
            c.unstable[key] = seq
    return c

