"""The agent's op table: each area's ops, found by folder and registered at the area's
first call; the protocol looks them up here.

An area is a folder of ``guest/areas/`` holding an ``ops`` module whose ``OPS`` maps
its op names (``"aio.setup"``: area ``aio``) to functions; the folder's name is the
area's, and every op it holds is named after it.  Nothing lists the areas by hand: a new
folder is a new area.  The ops modules are imported at the area's first call, so the
agent's start pays only for the protocol.  It imports nothing from the ops modules, so
an op that runs other ops (creds.call, creds.run) looks them up here without an import
cycle.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

AREAS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "areas")
AREAS_PACKAGE = "guest.areas"

OPS: dict[str, Callable[..., Any]] = {}
_LOADED: set[str] = set()  # areas whose ops module is registered


class RequestError(Exception):
    """A request the agent cannot run (unknown op, malformed message)."""


_AREAS: list[str] = []


def areas() -> list[str]:
    """Every area: the folders of guest/areas/ that hold an ops module (read once: a
    forked child with other credentials may not list the agent's directory)."""
    if not _AREAS:
        _AREAS.extend(sorted(name for name in os.listdir(AREAS_DIR)
                             if os.path.isfile(os.path.join(AREAS_DIR, name, "ops.py"))))
    return list(_AREAS)


def register(area: str, ops: dict[str, Callable[..., Any]]) -> None:
    """Add an area's ops; each is named ``area.*`` and may be taken once."""
    foreign = sorted(op for op in ops if op.partition(".")[0] != area)
    if foreign:
        raise RuntimeError(f"area {area} holds ops of other areas: {', '.join(foreign)}")
    taken = sorted(set(ops) & set(OPS))
    if taken:
        raise RuntimeError(f"ops registered twice: {', '.join(taken)}")
    OPS.update(ops)


def loaded(area: str) -> ModuleType | None:
    """The area's ops module if this agent imported it (one never imported holds nothing)."""
    return sys.modules.get(f"{AREAS_PACKAGE}.{area}.ops")


def load(area: str) -> None:
    """Import ``area``'s ops module and register its ops, once; an area that does not
    exist is nothing to load."""
    if area in _LOADED or area not in areas():
        return
    module = importlib.import_module(f"{AREAS_PACKAGE}.{area}.ops")
    register(area, module.OPS)
    _LOADED.add(area)


def lookup(op: str) -> Callable[..., Any]:
    """The op's function, its area imported first if needed (ImportError if it cannot
    be imported)."""
    if not isinstance(op, str):
        raise RequestError(f"unknown op {op!r}")
    if op not in OPS:
        load(op.partition(".")[0])
    try:
        return OPS[op]
    except KeyError:
        raise RequestError(f"unknown op {op!r}") from None
