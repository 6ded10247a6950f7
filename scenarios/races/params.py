"""Parameters of the race scenarios, with defaults sized for TCG (single-threaded QEMU).

Each scenario's parameters are a frozen dataclass; the tests are parametrized
with one instance, so the test id shows what ran.  ``KERNEL_LAB_RACE`` in the
environment overrides fields for a whole run, e.g. ``iterations=20,seconds=3``
for a smoke run or ``iterations=100000,seconds=600`` for a soak; names a
scenario does not have are ignored by it.

Under TCG, io_destroy dominates each iteration: it waits for an RCU grace
period (percpu_ref_kill of the context's users) and for the context's I/O,
so a few to a few tens of iterations per second is what a guest manages.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, TypeVar

ENV = "KERNEL_LAB_RACE"

# The fast NVMe (1 GiB) is shared with other suites: race writes stay in its
# last 64 MiB, which nothing else uses.
FAST_SCRATCH_OFFSET = 960 << 20

# The slow controller's limit (lab/vm/vm.py VmConfig: throttling.iops-total=25).
SLOW_IOPS = 25


@dataclasses.dataclass(frozen=True)
class DestroyVsSubmit:
    submitters: int = 2
    iterations: int = 150
    seconds: float = 20.0
    nr_events: int = 64
    max_target: int = 8  # destroy after 0..max_target accepted requests
    polls_per_iter: int = 2
    kinds: tuple[str, ...] = ("read", "write", "poll")


@dataclasses.dataclass(frozen=True)
class ConcurrentDestroy:
    threads: int = 4
    iterations: int = 100
    seconds: float = 15.0
    polls: int = 4  # pending POLLs make io_destroy cancel and wait: a wider window


@dataclasses.dataclass(frozen=True)
class SetupVsDestroy:
    creators: int = 2
    lookers: int = 2
    iterations: int = 300
    seconds: float = 15.0
    slots: int = 8
    nr_events: int = 8


@dataclasses.dataclass(frozen=True)
class DestroyBuffers:
    nbufs: int = 12  # reads per round: ~0.5 s of I/O at 25 IOPS
    iterations: int = 3  # rounds
    seconds: float = 30.0
    bufsize: int = 4096
    stride: int = 1 << 20


P = TypeVar("P")


def overrides(text: str | None = None) -> dict[str, str]:
    """``name=value,...`` from the argument or ``$KERNEL_LAB_RACE``."""
    text = os.environ.get(ENV, "") if text is None else text
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{ENV}: {item!r} is not name=value")
        pairs[name.strip()] = value.strip()
    return pairs


def load(cls: type[P], text: str | None = None) -> P:
    """The defaults of ``cls`` with the overrides that name its fields."""
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    changes: dict[str, Any] = {}
    for name, value in overrides(text).items():
        if name in fields:
            kind = type(getattr(cls, name))
            changes[name] = tuple(value.split("+")) if kind is tuple else kind(value)
    return dataclasses.replace(cls(), **changes)  # type: ignore[type-var]


def ident(p: Any) -> str:
    """A short test id: the numeric fields that set the loop's size."""
    keys = ("submitters", "threads", "creators", "lookers", "nbufs", "iterations", "seconds")
    return "-".join(f"{k}{getattr(p, k):g}" for k in keys if hasattr(p, k))
