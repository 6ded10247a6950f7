"""Kernel-version ranges as data: the machinery behind each suite's expectations.py.

A suite's expectations are ``Range`` entries (kernels ``low <= version < high``
answer ``value``) and features (the version a feature appeared in, with why); a
test asks ``expect_in`` or ``lacks_in`` and asserts the answer, or SKIPs with it.

Bounds may name a patch level: ``(7, 2, 6)``.  Tuples compare element by element
and a shorter one sorts first, so a kernel that reports no patch level, ``(7, 2)``,
counts as 7.2.0 (below 7.2.6), and ``(6, 19)`` is every 6.19.x.

A range whose value is ``UNVERIFIED`` is one no kernel of which could be measured
(nothing bootable is served there): a test on such a kernel measures the value,
records it as observed but unverified (``observe_in``, the ``observed`` fixture)
and asserts only what holds on every kernel, never the value itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Version = tuple[int, ...]
OPEN = (99,)  # no upper bound yet


class Unverified:
    """The value of a range no kernel of which was measured: observed, never asserted."""

    def __repr__(self) -> str:
        return "UNVERIFIED"


UNVERIFIED = Unverified()


@dataclass(frozen=True)
class Range:
    """Kernels ``low <= version < high`` answer ``value``."""

    low: Version
    high: Version
    value: Any
    why: str

    def holds(self, version: Version) -> bool:
        return self.low <= version[: len(self.low)] and version[: len(self.high)] < self.high


def range_in(table: Mapping[str, tuple[Range, ...]], version: Version, key: str) -> Range:
    """The range of ``key`` that ``version`` falls in; KeyError when none does."""
    for r in table[key]:
        if r.holds(version):
            return r
    raise KeyError(f"no expectation for {key} on {dotted(version)}")


def expect_in(table: Mapping[str, tuple[Range, ...]], version: Version, key: str) -> Any:
    """The expected answer of ``key`` on a kernel ``version`` (``UNVERIFIED`` in a range
    nobody measured); KeyError when unknown."""
    return range_in(table, version, key).value


def observe_in(table: Mapping[str, tuple[Range, ...]], version: Version, key: str,
               measured: Any, observed: Callable[[str], None]) -> Any:
    """What a test holds ``key`` to on ``version``: the expected answer, or in an
    ``UNVERIFIED`` range the ``measured`` one, noted through ``observed`` (the
    fixture): the test then checks only what is true on every kernel."""
    r = range_in(table, version, key)
    if r.value is not UNVERIFIED:
        return r.value
    observed(f"{key} = {measured!r} on {dotted(version)} (unverified: {r.why})")
    return measured


def dotted(version: Version) -> str:
    return ".".join(map(str, version))


def lacks_in(features: Mapping[str, tuple[Version, str]], version: Version,
             feature: str) -> str | None:
    """Why ``version`` lacks ``feature`` (a SKIP reason), or None if it has it."""
    since, why = features[feature]
    return None if version[: len(since)] >= since else why
