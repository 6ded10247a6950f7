"""Small-integer handle tables for objects the agent must keep alive, and the phases in
which ``agent.reset`` lets them go.

Handles are what crosses the protocol: the kernel holds raw pointers (iocbs,
buffers) that must outlive the request that created them.

An area whose ops module holds objects exports ``RESET``: its steps, each a phase below
and a function that closes (or counts) what a test left and returns how many of each
kind, ``{"fds": 2}``.  ``agent.reset`` runs the steps of every area the agent has loaded,
lowest phase first, and answers with the counts in that order (a later step's count
replaces an earlier one of the same kind).  The phases are the order the objects depend
on each other; a new area picks the phase its objects belong in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

RINGS = 10  # io_uring rings and buffer rings: nothing else waits on them
COUNT = 20  # what a step below may change, counted before any of them runs
# Files: a thread.start op blocked on one (a pipe read inside io_submit) returns once it
# is closed, and only then can its context be destroyed.
FILES = 30
COUNT_BUFFERS = 35  # counted before the threads return (a thread's op may take one)
THREADS = 40  # joined, a bounded wait; those still running are reported (unkillable)
MOUNTS = 50  # once the files on them are closed
# io_destroy: pending POLLs are cancelled, in-flight I/O is waited for uninterruptibly,
# so after the files and threads that could keep a read in flight.
CONTEXTS = 60
WOKEN = 70  # threads an io_destroy woke (an io_getevents) return
REQUESTS = 80  # iocbs: no context is left to complete one
SETTINGS = 90  # process settings an op changed (CPU affinity)
BUFFERS = 100  # every area's buffers, once no kernel object can use them

# The kinds agent.reset's reply always holds, 0 when no loaded area has any, in the order
# the host has always read them; a kind not listed here is reported after these, when
# its area is loaded.
KINDS = ("rings", "contexts", "fds", "mems", "threads", "mounts", "iocbs", "affinity")

ResetStep = tuple[int, Callable[[], dict[str, int]]]
"""A step of an area's ``RESET``: its phase and what it runs."""

T = TypeVar("T")


class Table(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[int, T] = {}
        self._next = 1  # 0 stays unused so a handle is never falsy

    def add(self, item: T) -> int:
        handle = self._next
        self._next += 1
        self._items[handle] = item
        return handle

    def get(self, handle: int) -> T:
        try:
            return self._items[handle]
        except KeyError:
            raise KeyError(f"unknown {self.kind} handle {handle!r}") from None

    def pop(self, handle: int) -> T:
        item = self.get(handle)
        del self._items[handle]
        return item

    def items(self) -> list[tuple[int, T]]:
        return list(self._items.items())

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
