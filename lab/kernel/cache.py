"""The kernel cache's published entries: one loader for Debian's and for built kernels.

An entry is a directory with ``kernel.json`` (``Kernel.to_json``) beside the
files it names; it was published whole by ``lab.atomic``, so an entry without
``kernel.json`` is not one (and ``.tmp-*`` siblings are work in progress).
"""

from __future__ import annotations

from pathlib import Path

from lab.kernel.artifact import METADATA, Kernel


def load_entry(entry: Path, *, spec: str | None = None) -> Kernel | None:
    """The Kernel of a published entry (with ``spec`` as asked for), None when not whole."""
    meta = entry / METADATA
    if not meta.is_file():
        return None
    return Kernel.from_json(meta.read_text(), entry, spec=spec)


def entries(base: Path) -> list[tuple[Path, Kernel]]:
    """Every published entry directly under ``base``, in no particular order."""
    if not base.is_dir():
        return []
    found: list[tuple[Path, Kernel]] = []
    for entry in base.iterdir():
        if entry.name.startswith("."):
            continue
        k = load_entry(entry)
        if k is not None:
            found.append((entry, k))
    return found
