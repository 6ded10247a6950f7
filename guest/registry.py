"""The agent's op table: every ops module registers its ops here, the protocol looks them up.

It imports nothing from the ops modules, so an op that runs other ops
(creds.call, creds.run) looks them up here without an import cycle.  The ops
modules are imported per area at the area's first call (``set_loader``: the
protocol says which modules make an area), so the agent's start pays only for
the protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

OPS: dict[str, Callable[..., Any]] = {}
_loader: Callable[[str], None] | None = None


class RequestError(Exception):
    """A request the agent cannot run (unknown op, malformed message)."""


def register(ops: dict[str, Callable[..., Any]]) -> None:
    """Add an area's ops (``"aio.setup": aio_setup, ...``); a name may be taken once."""
    taken = sorted(set(ops) & set(OPS))
    if taken:
        raise RuntimeError(f"ops registered twice: {', '.join(taken)}")
    OPS.update(ops)


def set_loader(loader: Callable[[str], None]) -> None:
    """``loader(area)`` imports the modules that register ``area``'s ops."""
    global _loader
    _loader = loader


def lookup(op: str) -> Callable[..., Any]:
    """The op's function, its area's modules imported first if needed (ImportError if
    one of them cannot be imported)."""
    if not isinstance(op, str):
        raise RequestError(f"unknown op {op!r}")
    if op not in OPS and _loader is not None:
        _loader(op.partition(".")[0])
    try:
        return OPS[op]
    except KeyError:
        raise RequestError(f"unknown op {op!r}") from None
