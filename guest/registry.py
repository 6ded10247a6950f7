"""The agent's op table: every ops module registers its ops here, the protocol looks them up.

It imports nothing from the ops modules, so an op that runs other ops
(creds.call, creds.run) looks them up here without an import cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

OPS: dict[str, Callable[..., Any]] = {}


class RequestError(Exception):
    """A request the agent cannot run (unknown op, malformed message)."""


def register(ops: dict[str, Callable[..., Any]]) -> None:
    """Add an area's ops (``"aio.setup": aio_setup, ...``); a name may be taken once."""
    taken = sorted(set(ops) & set(OPS))
    if taken:
        raise RuntimeError(f"ops registered twice: {', '.join(taken)}")
    OPS.update(ops)


def lookup(op: str) -> Callable[..., Any]:
    try:
        return OPS[op]
    except (KeyError, TypeError):
        raise RequestError(f"unknown op {op!r}") from None
