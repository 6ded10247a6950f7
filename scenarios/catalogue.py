"""Every suite's claims in one list: what a run writes into its run directory as claims.json.

The race suites' claims (scenarios/races/claims.py) are key -> text only; their sources
are given here until that module lists Claim entries of its own (then those are used).
"""

from __future__ import annotations

from scenarios.aio.claims import CATALOGUE as AIO
from scenarios.claim import Claim, Source
from scenarios.races import claims as races
from scenarios.uring.claims import CATALOGUE as URING

RACE_SOURCES: dict[str, Source] = {
    "destroy_vs_submit": Source("kapi-io_destroy", "notes: race with io_submit, 7137c6bd4552"),
    "concurrent_destroy": Source("kapi-io_destroy", "long-desc: two threads, only the first "
                                 "succeeds", "EINVAL"),
    "setup_vs_destroy": Source("kapi-io_destroy", "notes: race with io_setup, 86b62a2cb4fc"),
    "destroy_buffers": Source("kapi-io_destroy", "long-desc: buffers no longer accessed; notes "
                              "e02ba72aabfa"),
}


def race_claims() -> list[Claim]:
    own = getattr(races, "CATALOGUE", None)
    if own is not None:
        return list(own)
    return [Claim(key, text, RACE_SOURCES.get(key, Source("kapi-io_destroy", "races")),
                  suite="races") for key, text in races.CLAIMS.items()]


def catalogue() -> list[Claim]:
    """Every claim of every suite, checkable or not."""
    return [*AIO, *URING, *race_claims()]
