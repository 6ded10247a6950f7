"""Every suite's claims in one list: what a run writes into its run directory as claims.json.

A suite's claims are its folder's claims.toml (scenarios/claim.py reads and checks it); a
new suite, the peer suites' included, adds its file and nothing here.  Ids are unique
across suites: a test of one suite may cite another's claim (the enosys suite cites the
aio and uring suites' ENOSYS claims).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from scenarios.claim import CatalogueError, Claim, load

SCENARIOS = Path(__file__).resolve().parent


@cache
def catalogue() -> tuple[Claim, ...]:
    """Every claim of every suite, checkable or not, in the suites' order."""
    claims = tuple(c for path in sorted(SCENARIOS.glob("*/claims.toml")) for c in load(path))
    first: dict[str, str] = {}
    for c in claims:
        if c.id in first:
            raise CatalogueError(f"claim id {c.id!r} is listed by both {first[c.id]} and "
                                 f"{c.suite}: an id names one claim")
        first[c.id] = c.suite
    return claims


def by_id() -> dict[str, Claim]:
    """Every claim by its id."""
    return {c.id: c for c in catalogue()}


# claim id -> the deviation from its source a test records for it (``deviation`` fixture).
DEVIATIONS: dict[str, str] = {c.id: c.deviation for c in catalogue() if c.deviation}
