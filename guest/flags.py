"""Flag names to bits: the one helper every area's ops use for a list of names.

A request names flags (``["O_NONBLOCK"]``, ``["SQPOLL"]``, ``["RESFD"]``) or gives a
raw int, which passes unchanged so a test can hand the kernel bits no name covers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping


def flag_bits(names: Iterable[str] | int | None, known: Mapping[str, int], what: str = "flag",
              prefix: str = "") -> int:
    """OR of the bits of ``names`` in ``known`` (a name may carry ``prefix`` or not, in
    any case); a raw int as is, None as 0; an unknown name is a ValueError naming the
    known ones."""
    if names is None:
        return 0
    if isinstance(names, int):
        return names
    value = 0
    for name in names:
        key = name.removeprefix(prefix)
        if key not in known and key.upper() in known:
            key = key.upper()
        if key not in known:
            raise ValueError(f"unknown {what} {name!r} (known: {', '.join(sorted(known))})")
        value |= int(known[key])
    return value


def from_lib(lib: object, prefix: str, names: Iterable[str]) -> dict[str, int]:
    """``{name: lib.PREFIX+name}`` for the names the extension has (the kernel's headers)."""
    return {n: int(getattr(lib, prefix + n)) for n in names if hasattr(lib, prefix + n)}


def from_os(prefix: str) -> dict[str, int]:
    """The os module's constants named ``prefix*`` (O_*, EFD_*), by their full names."""
    return {n: v for n, v in vars(os).items() if n.startswith(prefix) and isinstance(v, int)}
