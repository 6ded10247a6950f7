"""Where a boot's seconds go: host and guest timestamps from QEMU start to the agent's hello.

Host events are marked as they happen (QEMU started, SSH accepted, probe done,
agent pushed, hello received).  Guest events come from the console, each with
its printk timestamp (the kernel's first line, init, boot.sh's steps) and from
the agent's hello (its interpreter's start and the end of its imports, in the
guest's CLOCK_MONOTONIC).  printk's clock is placed on the host's with the
smallest console delay seen among the lines near the event (within
``NEAR_S``: under TCG the guest's clock drifts from the host's by a few per cent,
half a second over a boot), and CLOCK_MONOTONIC on printk's by the line the agent
logs with its monotonic time (``kernel-lab: agent clock M``: the two guest clocks
differ by what the kernel ran before timekeeping began), so every event has a
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
    ("host root", re.compile(rb"kernel-lab: (host root (partly )?cached|no cached host root)")),
    ("network", re.compile(rb"kernel-lab: network up")),
    ("sshd", re.compile(rb"kernel-lab: guest ready")),
    ("boot failed", re.compile(rb"kernel-lab: boot failed: ")),
)
# sshd's own lines (-e: on the console, without a printk timestamp): host time only.
SSHD_EVENTS: tuple[tuple[str, re.Pattern[bytes]], ...] = (
    ("sshd listening", re.compile(rb"^Server listening on ")),
    ("sshd accepted key", re.compile(rb"^Accepted publickey for ")),
)
# The events a boot's progress line names (seconds since QEMU started), by what a
# person waits for: the kernel runs, the init starts, the lab's script, the network,
# the lab's SSH session, the agent's hello.
MILESTONES = (("kernel", "kernel"), ("init", "init"), ("boot.sh", "boot.sh"),
              ("network", "network"), ("ssh", "ssh"), ("hello", "agent"))
# Console lines this close in guest time place a guest-only event (see above).
NEAR_S = 2.0
# Console lines whose delay is kept: a boot prints about a thousand (its events are
# among them); the lines of a long run after it are not needed.
MAX_SAMPLES = 20_000
_PRINTK = re.compile(rb"^\[\s*(\d+\.\d+)\]")
# A panic's first and last lines (kernel/panic.c): between them its stack and registers.
_PANIC = re.compile(rb"Kernel panic - not syncing: ?(.*)")
_PANIC_END = re.compile(rb"---\[ end Kernel panic")
_AGENT_CLOCK = re.compile(rb"kernel-lab: agent clock (\d+\.\d+)")


@dataclass(frozen=True)
class Event:
    name: str
    host_s: float | None  # seconds since QEMU started, on the host's clock
    guest_s: float | None  # printk's timestamp (the guest's uptime) when known
    guest_mono: float | None = None  # the guest's CLOCK_MONOTONIC, for the agent's events


class Timeline:
    """The events of one boot, safe to feed from the console's tee thread."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self._events: list[Event] = []
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._samples: list[tuple[float, float]] = []  # (guest_s, host_s - guest_s)
        self._mono: float | None = None  # printk's clock - CLOCK_MONOTONIC, in the guest
        self.failure: str | None = None  # what guest/boot.sh said when it gave up
        # The kernel's panic message once its last line is on the console.  Under
        # panic=0 (lab.vm.session, for a crash dump) a panicked guest does not end QEMU:
        # this is how the lab learns that it is dead.
        self.panic: str | None = None
        self._panic_text: str | None = None

    def mark(self, name: str, *, guest_s: float | None = None, host: bool = True) -> None:
        """An event now on the host (``host=False``: a guest-only event, placed later)."""
        with self._lock:
            self._events.append(Event(name, time.monotonic() - self.t0 if host else None,
                                      guest_s))

    def mark_guest(self, name: str, monotonic: float) -> None:
        """An event at the guest's CLOCK_MONOTONIC ``monotonic``, placed later."""
        with self._lock:
            self._events.append(Event(name, None, None, monotonic))

    def on_console(self, line: bytes) -> None:
        """Called for every console line as it arrives."""
        if self.panic is None:
            self._watch_panic(line)
        m = _PRINTK.match(line)
        if m is None:
            self._host_event(line)
            return
        host_s, guest_s = time.monotonic() - self.t0, float(m.group(1))
        with self._lock:
            if len(self._samples) < MAX_SAMPLES:  # a console flood costs no memory here
                self._samples.append((guest_s, host_s - guest_s))
            clock = _AGENT_CLOCK.search(line)
            if clock is not None:
                self._mono = guest_s - float(clock.group(1))
            for name, pattern in CONSOLE_EVENTS:
                if name not in self._seen and pattern.search(line):
                    self._seen.add(name)
                    self._events.append(Event(name, host_s, guest_s))
                    if name == "boot failed":
                        text = line.decode("utf-8", "replace").strip()
                        self.failure = text.split("kernel-lab: boot failed: ", 1)[1]

    def _watch_panic(self, line: bytes) -> None:
        if self._panic_text is None:
            m = _PANIC.search(line)
            if m is not None:
                self._panic_text = m.group(1).decode("utf-8", "replace").strip()
        elif _PANIC_END.search(line):
            self.panic = self._panic_text

    def dead(self) -> str | None:
        """Why the guest's kernel is dead, from the console ("the kernel panicked: ..."),
        None while it is not known to be."""
        panic = self.panic
        return None if panic is None else f"the kernel panicked: {panic}"

    def _host_event(self, line: bytes) -> None:
        with self._lock:
            for name, pattern in SSHD_EVENTS:
                if name not in self._seen and pattern.search(line):
                    self._seen.add(name)
                    self._events.append(Event(name, time.monotonic() - self.t0, None))

    def seen(self, name: str) -> bool:
        """Whether the console has shown event ``name`` yet."""
        with self._lock:
            return name in self._seen

    def events(self) -> list[Event]:
        """Every event with a host time (guest-only ones placed by the clock offset), in order."""
        with self._lock:
            mono = self._mono
            # The console's smallest delay, for an event with no console line near it.
            offset = min((d for _, d in self._samples), default=None)
            out = []
            for e in self._events:
                if e.guest_mono is not None and mono is not None:
                    e = Event(e.name, None, e.guest_mono + mono)
                if e.host_s is None and e.guest_s is not None and offset is not None:
                    g = e.guest_s
                    near = [d for t, d in self._samples if abs(t - g) <= NEAR_S]
                    e = Event(e.name, g + (min(near) if near else offset), g)
                out.append(e)
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

    def milestones(self) -> list[tuple[str, float]]:
        """(name, seconds since QEMU started) for each of MILESTONES seen, in order."""
        at = {e.name: e.host_s for e in self.events() if e.host_s is not None}
        return [(label, at[name]) for name, label in MILESTONES if name in at]

    def progress_line(self) -> str:
        """"guest up in 9.3 s (kernel 1.5 s, init 4.1 s, ..., agent 9.3 s)"."""
        marks = self.milestones()
        total = dict(marks).get("agent", time.monotonic() - self.t0)
        inner = ", ".join(f"{label} {s:.1f} s" for label, s in marks)
        return f"guest up in {total:.1f} s" + (f" ({inner})" if inner else "")

    def to_lines(self, vm: str) -> list[dict[str, Any]]:
        return [{"vm": vm, "event": e.name, "host_s": round(e.host_s or 0.0, 3),
                 "guest_s": None if e.guest_s is None else round(e.guest_s, 3)}
                for e in self.events()]
