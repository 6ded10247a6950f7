"""The kernel-log watch around a test: mark the log, read it back, judge what it shows.

``begin`` notes where the kernel log and the console stand and writes a marker;
``end`` waits for the log to go quiet (deferred work a test started prints
late), writes the end marker and reads every record since the mark with the
taint mask.  ``assess`` decides what of that belongs to the test: a hung-task
report whose task was blocked for longer than the test has been running began
before it and is not charged to it; a splat in the first moments of the window
may come from the previous test's deferred work, which the record then names.
Nothing here imports pytest: the guard (lab.run.guard) applies the result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from lab.results import nvme, splat
from lab.vm.agent import Agent
from lab.vm.session import Machine

# The log must be quiet this long before a test's window closes; at most this long.
SETTLE_MS, SETTLE_MAX_MS = 150, 2000
# A splat this soon after a test began may be the previous test's deferred work.
EARLY_S = 1.0
_BLOCKED_FOR = re.compile(r"blocked for more than (\d+) seconds")
_LOCKDEP_DISABLED = "Disabling lock debugging due to kernel taint"  # kernel/panic.c add_taint


@dataclass(frozen=True)
class Mark:
    """Where the logs stood when a test began."""

    console_offset: int
    seq: int
    taint: int
    ts_us: int  # the begin marker's kernel timestamp


@dataclass
class Findings:
    """What the kernel logged in a test's window."""

    records: list[dict[str, Any]] = field(default_factory=list)
    taint_after: int = 0


@dataclass
class Assessment:
    """The part of a window's log that is the test's, and what else it showed."""

    splats: list[splat.Splat] = field(default_factory=list)  # charged to the test
    earlier: list[splat.Splat] = field(default_factory=list)  # began before the test
    early: bool = False  # a charged splat came right after the test began
    taint_before: str = ""
    taint_after: str = ""
    taint_changed: bool = False
    nvme_events: list[str] = field(default_factory=list)
    lost: int = 0  # kernel-log records overwritten before they were read (an overrun)
    # The kernel said lockdep is off: a taint with LOCKDEP_NOW_UNRELIABLE (a KASAN
    # report, a bad page state) prints this once, when it turns lockdep off.
    lockdep_disabled: bool = False

    @property
    def fatal(self) -> bool:
        return any(s.fatal for s in self.splats)

    def detectors_off(self, cmdline: tuple[str, ...]) -> tuple[str, str]:
        """(the detectors silent from now on, so the guest is replaced; one that stays off
        in a guest kept) on a kernel booted with ``cmdline`` (lab.results.splat)."""
        off, kept = splat.detectors_off({s.kind for s in [*self.splats, *self.earlier]},
                                        cmdline)
        return off, kept or ("LOCKDEP" if self.lockdep_disabled and not off else "")

    def problem(self) -> str:
        """Why the test fails because of the kernel log, or "" when it does not."""
        if self.splats:
            return f"kernel splat during the test: {self.splats[0].title}\n" + "\n".join(
                f"{s.title}\n{s.excerpt}" for s in self.splats)
        if self.taint_changed:
            return (f"the kernel's taint changed during the test: "
                    f"{self.taint_before or '-'} -> {self.taint_after}")
        return ""


def begin(machine: Machine, agent: Agent, label: str) -> Mark:
    """Mark the kernel log before a test (and note the console's size): one round trip."""
    offset = machine.console_offset()
    got = agent.call("sys.kmsg_mark", text=f"kernel-lab: begin {label}")
    return Mark(console_offset=offset, seq=int(got["seq"]), taint=int(got["taint"]),
                ts_us=int(got["ts_us"]))


def end(agent: Agent, mark: Mark, label: str) -> Findings:
    """What the kernel logged since ``mark``, once the log has gone quiet: one round trip.

    Raises what the agent raises: a log that cannot be read is evidence too
    (the guest died or hung after the test's last call).
    """
    got = agent.call("sys.kmsg_close", after_seq=mark.seq, text=f"kernel-lab: end {label}",
                     settle_ms=SETTLE_MS, max_wait_ms=SETTLE_MAX_MS)
    return Findings(records=got["records"], taint_after=int(got["taint"]))


def assess(found: Findings, mark: Mark) -> Assessment:
    """Split the window's splats into the test's and those that began before it."""
    out = Assessment(taint_before=splat.taint_letters(mark.taint),
                     taint_after=splat.taint_letters(found.taint_after),
                     taint_changed=bool(found.taint_after & ~mark.taint))
    if not found.records:
        return out
    out.lost = lost_records(found.records, mark.seq)
    out.lockdep_disabled = any(_LOCKDEP_DISABLED in r["text"] for r in found.records)
    text = "\n".join(r["text"] for r in found.records)
    out.nvme_events = nvme.events(r["text"] for r in found.records)
    for s in splat.parse(text):
        ts = _first_ts(found.records, s)
        window_s = max(0.0, (ts - mark.ts_us) / 1e6) if ts and mark.ts_us else None
        blocked = _BLOCKED_FOR.search(s.excerpt)
        if s.kind == "HUNG_TASK" and blocked and window_s is not None and \
                int(blocked.group(1)) > window_s:
            out.earlier.append(s)  # the task was blocked before this test began
            continue
        out.splats.append(s)
        if window_s is not None and window_s < EARLY_S:
            out.early = True
    return out


def _first_ts(records: list[dict[str, Any]], found: splat.Splat) -> int:
    """The kernel timestamp of the record a splat's excerpt starts with."""
    head = found.excerpt.splitlines()[0].strip() if found.excerpt else ""
    for r in records:
        if head and r["text"].strip() == head:
            return int(r["ts_us"])
    return 0


def lost_records(records: list[dict[str, Any]], after_seq: int) -> int:
    """How many records of a window the ring overwrote before they were read.

    The kernel numbers its records without a gap; /dev/kmsg answers EPIPE and goes on at
    the oldest record still there when the reader fell behind (an overrun).  So a gap in
    the sequence numbers, from the one after the window's mark on, is what was lost: a
    splat may have been in it.
    """
    expected = after_seq + 1 if after_seq >= 0 else int(records[0]["seq"])
    lost = 0
    for r in records:
        seq = int(r["seq"])
        if seq > expected:
            lost += seq - expected
        expected = max(expected, seq + 1)
    return lost
