"""Small-integer handle tables for objects the agent must keep alive.

Handles are what crosses the protocol: the kernel holds raw pointers (iocbs,
buffers) that must outlive the request that created them.
"""

from __future__ import annotations

from typing import Generic, TypeVar

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
