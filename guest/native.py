"""Loading the compiled ``_labsys`` extension and turning results into errors.

The extension is built on the host and copied into this package, so it is
``guest._labsys``; a top-level ``_labsys`` on sys.path is accepted as well so
a hand-run agent can point PYTHONPATH at a build directory.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

_mod: ModuleType | None = None


def load() -> ModuleType:
    """Import the extension once; raise ImportError with both attempts named."""
    global _mod
    if _mod is not None:
        return _mod
    errors: list[str] = []
    for name in ("guest._labsys", "_labsys"):
        try:
            _mod = importlib.import_module(name)
            return _mod
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
    raise ImportError("cannot import the _labsys extension (" + "; ".join(errors) + ")")


def ffi() -> Any:
    return load().ffi


def lib() -> Any:
    return load().lib


def check(ret: int) -> int:
    """C helpers return -errno on failure; raise it the way os.* would."""
    if ret < 0:
        raise OSError(-ret, os.strerror(-ret))
    return ret
