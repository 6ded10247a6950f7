"""Kernel-version ranges as data: the machinery behind each suite's expectations.py.

A suite's expectations are ``Range`` entries (kernels ``low <= version < high``
answer ``value``) and features (the version a feature appeared in, with why); a
test asks ``expect_in`` or ``lacks_in`` and asserts the answer, or SKIPs with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Version = tuple[int, ...]
OPEN = (99,)  # no upper bound yet


@dataclass(frozen=True)
class Range:
    """Kernels ``low <= version < high`` answer ``value``."""

    low: Version
    high: Version
    value: Any
    why: str

    def holds(self, version: Version) -> bool:
        return self.low <= version[: len(self.low)] and version[: len(self.high)] < self.high


def expect_in(table: Mapping[str, tuple[Range, ...]], version: Version, key: str) -> Any:
    """The expected answer of ``key`` on a kernel ``version``; KeyError when unknown."""
    for r in table[key]:
        if r.holds(version):
            return r.value
    raise KeyError(f"no expectation for {key} on {'.'.join(map(str, version))}")


def lacks_in(features: Mapping[str, tuple[Version, str]], version: Version,
             feature: str) -> str | None:
    """Why ``version`` lacks ``feature`` (a SKIP reason), or None if it has it."""
    since, why = features[feature]
    return None if version[: len(since)] >= since else why
