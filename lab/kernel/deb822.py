"""Debian's formats as pure functions: version comparison, deb822 stanzas, Depends.

No I/O and no processes: lab/kernel/debian.py (binary kernels) and lab/kernel/source.py
(linux-source packages) parse what apt prints with these, and the unit tests
check them against dpkg's rules directly.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

# --- Debian versions ---------------------------------------------------------------------


def _order(c: str) -> int:
    # dpkg's order(): digits sort as 0 (handled separately), letters before other
    # characters, "~" before everything including the end of the string.
    if c == "":
        return 0
    if c.isascii() and c.isdigit():
        return 0
    if c.isascii() and c.isalpha():
        return ord(c)
    if c == "~":
        return -1
    return ord(c) + 256


def _isdigit(c: str) -> bool:
    return c != "" and c in "0123456789"


def _verrevcmp(a: str, b: str) -> int:
    """dpkg's verrevcmp() on upstream or revision strings."""
    i = j = 0

    def at(s: str, k: int) -> str:
        return s[k] if k < len(s) else ""

    while i < len(a) or j < len(b):
        while (i < len(a) and not _isdigit(a[i])) or (j < len(b) and not _isdigit(b[j])):
            ac, bc = _order(at(a, i)), _order(at(b, j))
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while at(a, i) == "0":
            i += 1
        while at(b, j) == "0":
            j += 1
        first_diff = 0
        while _isdigit(at(a, i)) and _isdigit(at(b, j)):
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if _isdigit(at(a, i)):
            return 1
        if _isdigit(at(b, j)):
            return -1
        if first_diff:
            return first_diff
    return 0


def split_version(version: str) -> tuple[int, str, str]:
    """(epoch, upstream, revision) of a Debian version string."""
    epoch = 0
    rest = version.strip()
    if ":" in rest:
        head, rest = rest.split(":", 1)
        if not head.isdigit():
            raise ValueError(f"bad epoch in Debian version {version!r}")
        epoch = int(head)
    upstream, sep, revision = rest.rpartition("-")
    if not sep:
        upstream, revision = rest, ""
    return epoch, upstream, revision


def compare_versions(a: str, b: str) -> int:
    """Compare two Debian versions like `dpkg --compare-versions`: <0, 0 or >0."""
    ea, ua, ra = split_version(a)
    eb, ub, rb = split_version(b)
    if ea != eb:
        return ea - eb
    return _verrevcmp(ua, ub) or _verrevcmp(ra, rb)


version_key = functools.cmp_to_key(compare_versions)


def in_series(version: str, series: str) -> bool:
    """Whether a package version belongs to a series: "7.2" has 7.2.13-1 and 7.2~rc1-1."""
    upstream = split_version(version)[1]
    return upstream == series or upstream.startswith((series + ".", series + "~", series + "+"))


# --- deb822 and relations ----------------------------------------------------------------


def parse_stanzas(text: str) -> list[dict[str, str]]:
    """deb822 paragraphs (as `apt-cache show` prints them) as dicts; continuations joined."""
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key: str | None = None
    for line in text.splitlines():
        if not line.strip():
            if current:
                stanzas.append(current)
            current, key = {}, None
        elif line[0] in " \t":
            if key is not None:
                current[key] += "\n" + line[1:]
        elif ":" in line:
            key, value = line.split(":", 1)
            current[key] = value.strip()
        # else: apt's "N:"/"E:" notes or junk; not part of a stanza
    if current:
        stanzas.append(current)
    return [s for s in stanzas if "Package" in s]


@dataclass(frozen=True)
class Relation:
    """One alternative of a Depends entry: ``name (op version)``."""

    name: str
    op: str | None = None
    version: str | None = None


_RELATION = re.compile(
    r"^\s*([a-z0-9][a-z0-9+.\-]*)(?::\S+)?"  # name, optional :arch qualifier
    r"\s*(?:\(\s*([<>=]+)\s*([^)\s]+)\s*\))?"  # optional (op version)
)


def parse_depends(value: str) -> list[list[Relation]]:
    """A Depends field as a list of entries, each a list of alternatives."""
    entries: list[list[Relation]] = []
    for entry in value.split(","):
        alts: list[Relation] = []
        for alt in entry.split("|"):
            m = _RELATION.match(alt)
            if m:
                alts.append(Relation(m.group(1), m.group(2), m.group(3)))
        if alts:
            entries.append(alts)
    return entries
