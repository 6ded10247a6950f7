"""Kernel-version ranges as data: the machinery behind each suite's expectations.py.

A suite's expectations are ``Range`` entries (kernels ``low <= version < high``
answer ``value``); a test asks ``expect_in`` and asserts the answer.  Whether a
kernel has a feature is never read from here: it is probed (``requires_feature``).

A value measured on some kernels, not read from the source, says so (``builds``):
it holds for those builds (Debian's) alone, and is UNVERIFIED for any other kernel
whose version string falls in the range.

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


class Built(tuple[int, ...]):
    """A kernel's version together with whose build it is (lab.kernel's ``source``:
    "debian" for Debian's packages, "debian-src" for the lab's builds of Debian's source
    packages, "git", "tree", "path", ...): what a test's ``version`` fixture gives."""

    build: str

    def __new__(cls, version: Version, build: str) -> Built:
        made = super().__new__(cls, version)
        made.build = build
        return made


# Measured on Debian's kernels: their packages, and builds of the same source packages.
DEBIAN = ("debian", "debian-src")


@dataclass(frozen=True)
class Range:
    """Kernels ``low <= version < high`` answer ``value``.

    ``builds``: the value was measured on these builds only (``DEBIAN``), not read
    from the source: it is an observation about them, asserted for them alone.  Any
    other kernel of the range (an upstream build with the same version string, a
    vendor's, a bare image) finds it UNVERIFIED: measured and observed, never judged.
    """

    low: Version
    high: Version
    value: Any
    why: str
    builds: tuple[str, ...] = ()

    def holds(self, version: Version) -> bool:
        return self.low <= version[: len(self.low)] and version[: len(self.high)] < self.high


def range_in(table: Mapping[str, tuple[Range, ...]], version: Version, key: str) -> Range:
    """The range of ``key`` that ``version`` falls in (as UNVERIFIED when its value was
    measured on other builds than ``version``'s); KeyError when none does."""
    for r in table[key]:
        if not r.holds(version):
            continue
        build = getattr(version, "build", "")
        if r.builds and r.value is not UNVERIFIED and build not in r.builds:
            return Range(r.low, r.high, UNVERIFIED,
                         f"{r.why}, on {'/'.join(r.builds)} builds; this kernel is not "
                         f"one of them ({build or 'build unknown'})",
                         r.builds)
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
