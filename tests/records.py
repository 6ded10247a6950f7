"""Hand-made records for the matrix, comparison and report tests (no VM, no files)."""

from __future__ import annotations

from typing import Any

from lab.results.record import Record

RELEASES = {"debian:7.2": "7.2.13+deb14-amd64", "debian:6.1": "6.1.0-50-amd64",
            "debian-src:7.3": "7.3.0-rc7"}


def kernel(cell: str, release: str | None = None) -> dict[str, Any]:
    spec, _, variant = cell.partition("/")
    return {"spec": spec, "release": release or RELEASES.get(spec, "7.2.0"),
            "config_hash": "0123456789abcdef", "variant": variant or "prebuilt",
            "source": "debian-src" if variant else "debian", "package_version": None}


def rec(name: str, verdict: str, cell: str = "debian:7.2", *, file: str = "scenarios/aio/t.py",
        param: str = "", release: str | None = None, **kw: Any) -> Record:
    """A record of ``file::name[param-cell]`` on ``cell``."""
    params = f"{param}-{cell}" if param else cell
    return Record(test=f"{file}::{name}[{params}]", verdict=verdict, duration=0.5,
                  kernel=kernel(cell, release), cell=cell, finished=1_796_000_000.0, **kw)


def splat(title: str, kind: str = "WARNING") -> dict[str, Any]:
    return {"kind": kind, "title": title, "fatal": False, "frames": [], "taint": "W",
            "excerpt": f"------------[ cut here ]------------\n{title}\n"}
