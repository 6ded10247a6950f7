"""A claim of an API text, in the lab's words, with where it comes from.

The suites check claims of the texts in ../shared/specs (the KAPI specifications of
io_submit, io_destroy and io_cancel, the 2019 io_uring review, the multishot uring_cmd
patch and its review), of the man pages, and facts read from the kernel's source
(../shared/FACTS.md).  Each claim is one entry: a key the tests cite, the claim in our
own words, its source (text, section, error), and either the deviation the kernel
shows from the source (recorded by the test with the ``deviation`` fixture) or, for a
claim no test can check from userspace, the reason.  lab/results/claims.py audits a
run's records against this data (plain dicts: ``Claim.as_dict``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

# Short names of the texts a Source may cite.
TEXTS = {
    "kapi-io_submit": "kapi-io_submit-rfc-v5.txt",
    "kapi-io_destroy": "kapi-io_destroy-rfc-v5.txt",
    "kapi-io_cancel": "kapi-io_cancel-rfc-v5.txt",
    "uring-review-2019": "io_uring-review-2019-jann-horn.txt",
    "uring_cmd-multishot": "uring_cmd-multishot-v4-review.txt",
    "FACTS": "../shared/FACTS.md (read from the kernel's source or measured)",
    "io_submit(2)": "the io_submit(2) man page",
    "io_destroy(2)": "the io_destroy(2) man page",
    "io_cancel(2)": "the io_cancel(2) man page",
}


@dataclass(frozen=True)
class Source:
    """Where a claim comes from: a text of TEXTS, the section in it, the error it names."""

    text: str
    section: str
    error: str = ""

    def __post_init__(self) -> None:
        if self.text not in TEXTS:
            raise ValueError(f"unknown source text {self.text!r} (known: {', '.join(TEXTS)})")


@dataclass(frozen=True)
class Claim:
    """One claim: ``deviation`` says where the kernel disagrees with the source (the test
    asserts the kernel's behaviour and records this); ``not_checkable`` why no test can
    check it from userspace (such a claim is listed, never cited by a test)."""

    key: str
    text: str
    source: Source
    deviation: str = ""
    not_checkable: str = ""
    suite: str = ""

    @property
    def checkable(self) -> bool:
        return not self.not_checkable

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def claims_table(catalogue: Iterable[Claim]) -> dict[str, str]:
    """key -> text of the checkable claims: what ``@pytest.mark.claim(CLAIMS[key])`` cites."""
    return {c.key: c.text for c in catalogue if c.checkable}


def deviations_table(catalogue: Iterable[Claim]) -> dict[str, str]:
    """key -> the deviation a test records for that claim."""
    return {c.key: c.deviation for c in catalogue if c.deviation}
