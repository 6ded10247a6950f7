"""Where a boot's seconds go: host and guest timestamps from QEMU start to the agent's hello.

Host events are marked as they happen (QEMU started, SSH accepted, probe done,
agent pushed, hello received).  Guest events come from the console, each with
its printk timestamp (the kernel's first line, init, boot.sh's steps) and from
the agent's hello (its interpreter's start and the end of its imports, in the
guest's CLOCK_MONOTONIC, which printk's clock follows).  The guest clock is
placed on the host's with the smallest console delay seen, so every event has a
host time.  ``slices`` are the gaps between consecutive events, largest first on
request: the timeline says where to cut.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

# Console lines worth an event, the first time each appears.
CONSOLE_EVENTS: tuple[tuple[str, re.Pattern[bytes]], ...] = (
    ("kernel", re.compile(rb"Linux version ")),
    ("init", re.compile(rb"Run /\S* as init process")),
    ("real root", re.compile(rb"virtme initramfs: done; switching to real root")),
    ("virtme-ng-init", re.compile(rb"virtme-ng-init: ")),
    ("boot.sh", re.compile(rb"kernel-lab: boot\.sh started")),
    ("network", re.compile(rb"kernel-lab: network up")),
    ("sshd", re.compile(rb"kernel-lab: guest ready")),
)
_PRINTK = re.compile(rb"^\[\s*(\d+\.\d+)\]")


@dataclass(frozen=True)
class Event:
    name: str
    host_s: float | None  # seconds since QEMU started, on the host's clock
    guest_s: float | None  # the guest's uptime (CLOCK_MONOTONIC / printk) when known


class Timeline:
    """The events of one boot, safe to feed from the console's tee thread."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self._events: list[Event] = []
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._offset: float | None = None  # host_s - guest_s, smallest seen

    def mark(self, name: str, *, guest_s: float | None = None, host: bool = True) -> None:
        """An event now on the host (``host=False``: a guest-only event, placed later)."""
        with self._lock:
            self._events.append(Event(name, time.monotonic() - self.t0 if host else None,
                                      guest_s))

    def on_console(self, line: bytes) -> None:
        """Called for every console line as it arrives."""
        m = _PRINTK.match(line)
        if m is None:
            return
        host_s, guest_s = time.monotonic() - self.t0, float(m.group(1))
        with self._lock:
            if self._offset is None or host_s - guest_s < self._offset:
                self._offset = host_s - guest_s
            for name, pattern in CONSOLE_EVENTS:
                if name not in self._seen and pattern.search(line):
                    self._seen.add(name)
                    self._events.append(Event(name, host_s, guest_s))

    def events(self) -> list[Event]:
        """Every event with a host time (guest-only ones placed by the clock offset), in order."""
        with self._lock:
            offset = self._offset
            out = [e if e.host_s is not None or e.guest_s is None or offset is None
                   else Event(e.name, e.guest_s + offset, e.guest_s) for e in self._events]
        return sorted((e for e in out if e.host_s is not None),
                      key=lambda e: e.host_s or 0.0)

    def slices(self) -> list[tuple[str, float]]:
        """("a -> b", seconds) for each pair of consecutive events, from QEMU's start."""
        events = self.events()
        out: list[tuple[str, float]] = []
        for before, after in itertools.pairwise(events):
            assert before.host_s is not None and after.host_s is not None
            out.append((f"{before.name} -> {after.name}", after.host_s - before.host_s))
        return out

    def largest(self, n: int = 3) -> list[tuple[str, float]]:
        return sorted(self.slices(), key=lambda s: -s[1])[:n]

    def to_lines(self, vm: str) -> list[dict[str, Any]]:
        return [{"vm": vm, "event": e.name, "host_s": round(e.host_s or 0.0, 3),
                 "guest_s": None if e.guest_s is None else round(e.guest_s, 3)}
                for e in self.events()]
