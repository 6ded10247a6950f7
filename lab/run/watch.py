"""The kernel-log watch around a test: mark the log, read it back, judge what it shows.

``begin`` notes where the kernel log and the console stand and writes a marker;
``end`` waits for the log to go quiet (deferred work a test started prints
late), reads every record since the mark with the taint mask and writes the end
marker.  Windows leave no gap: the next ``begin`` also reads every record since
the last ``end`` read (what the kernel printed between the two tests: RCU
callbacks, io_ring_exit_work, aio's percpu-ref free), and that part is judged as
the previous test's (its deferred work).  ``assess`` decides what of a window
belongs to its test: a hung-task report is charged to the test in whose window
the task began to block (the machine keeps this boot's window starts), wherever
it is read; a splat in the first moments of the window may come from the
previous test's deferred work, which the record then names.  Nothing here
imports pytest: the guard (lab.run.guard) applies the result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from lab.results import nvme, splat
from lab.results.text import printable
from lab.vm.agent import Agent
from lab.vm.session import Closed, Machine

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
    ts_us: int  # when the test's body began (the begin marker's kernel timestamp + a wait)
    opened_us: int = 0  # the begin marker's kernel timestamp: where the window opened


@dataclass
class Findings:
    """What the kernel logged in a test's window."""

    records: list[dict[str, Any]] = field(default_factory=list)
    taint_after: int = 0
    seq: int = -1  # the last record read: the next window's gap starts after it


@dataclass
class Assessment:
    """The part of a window's log that is the test's, and what else it showed."""

    splats: list[splat.Splat] = field(default_factory=list)  # charged to the test
    earlier: list[splat.Splat] = field(default_factory=list)  # began before the test
    # Hung tasks that began in an earlier window, by the test whose window it was.
    elsewhere: list[tuple[str, splat.Splat]] = field(default_factory=list)
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
        off, kept = splat.detectors_off({s.kind for s in [*self.splats, *self.earlier,
                                                        *(s for _, s in self.elsewhere)]},
                                        cmdline)
        return off, kept or ("LOCKDEP" if self.lockdep_disabled and not off else "")

    def problem(self) -> str:
        """Why the test fails because of the kernel log, or "" when it does not (the
        kernel's text with its control characters spelled out: a failure message)."""
        if self.splats:
            return printable(f"kernel splat during the test: {self.splats[0].title}\n" +
                             "\n".join(f"{s.title}\n{s.excerpt}" for s in self.splats))
        if self.taint_changed:
            return (f"the kernel's taint changed during the test: "
                    f"{self.taint_before or '-'} -> {self.taint_after}")
        return ""


def begin(machine: Machine, agent: Agent, label: str,
          since: Closed | None = None) -> tuple[Mark, Findings | None]:
    """Mark the kernel log before a test (and note the console's size): one round trip.

    With ``since`` (the last window that closed cleanly on this guest), also what the
    kernel printed since it closed, with the taint mask as it stands now.
    """
    offset = machine.console_offset()
    got = agent.call("sys.kmsg_mark", text=f"kernel-lab: begin {label}",
                     since_seq=None if since is None else since.seq)
    ts = int(got["ts_us"])
    mark = Mark(console_offset=offset, seq=int(got["seq"]), taint=int(got["taint"]),
                ts_us=ts, opened_us=ts)
    gap = None if since is None else Findings(records=got.get("records") or [],
                                              taint_after=int(got["taint"]), seq=mark.seq)
    return mark, gap


def end(agent: Agent, mark: Mark, label: str) -> Findings:
    """What the kernel logged since ``mark``, once the log has gone quiet: one round trip.

    Raises what the agent raises: a log that cannot be read is evidence too
    (the guest died or hung after the test's last call).
    """
    got = agent.call("sys.kmsg_close", after_seq=mark.seq, text=f"kernel-lab: end {label}",
                     settle_ms=SETTLE_MS, max_wait_ms=SETTLE_MAX_MS)
    return Findings(records=got["records"], taint_after=int(got["taint"]),
                    seq=int(got.get("seq", mark.seq)))


def gap_mark(closed: Closed) -> Mark:
    """The mark a gap is judged against: the closed window's end, its taint."""
    return Mark(console_offset=closed.console_offset, seq=closed.seq, taint=closed.taint,
                ts_us=0, opened_us=closed.opened_us)


def owner(windows: list[tuple[int, str]], began_us: int) -> str:
    """The test whose window was open at ``began_us`` ("" before this boot's first)."""
    found = ""
    for start, test in windows:
        if start and start <= began_us:
            found = test
    return found


def assess(found: Findings, mark: Mark, *, test: str = "",
           windows: list[tuple[int, str]] | None = None) -> Assessment:
    """Split the window's splats into those charged to ``test`` and those that began before.

    A hung-task report is charged to the test in whose window its task began to block
    (the report's time less the time blocked), found in ``windows`` (this boot's window
    starts, oldest first); one that began before this window, in another test's, is
    listed in ``elsewhere`` under that test; one that began before the first window (or
    without ``windows``, before this window) is ``earlier``.
    """
    out = Assessment(taint_before=splat.taint_letters(mark.taint),
                     taint_after=splat.taint_letters(found.taint_after),
                     taint_changed=bool(found.taint_after & ~mark.taint))
    if not found.records:
        return out
    out.lost = lost_records(found.records, mark.seq)
    out.lockdep_disabled = any(_LOCKDEP_DISABLED in r["text"] for r in found.records)
    text = "\n".join(r["text"] for r in found.records)
    out.nvme_events = nvme.events(r["text"] for r in found.records)
    opened = mark.opened_us or mark.ts_us
    for s in splat.parse(text):
        ts = _first_ts(found.records, s)
        window_s = max(0.0, (ts - mark.ts_us) / 1e6) if ts and mark.ts_us else None
        blocked = _BLOCKED_FOR.search(s.excerpt)
        if s.kind == "HUNG_TASK" and blocked and ts and opened:
            began = ts - int(blocked.group(1)) * 1_000_000
            if began < opened:  # it began before this window opened: whose was it?
                was = owner(windows or [], began)
                if was and was != test:
                    out.elsewhere.append((was, s))
                elif not was:
                    out.earlier.append(s)
                else:
                    out.splats.append(s)
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


def act_on_detectors(machine: Machine, seen: Assessment, *, since: str) -> None:
    """What a window (or the gap after one) that silenced a detector means for the guest:
    replaced when the detector is off for the rest of the boot (a planned replacement);
    kept when it goes on reporting (kasan_multi_shot, a bad page state), with the note
    every later record of this boot carries that lockdep is off ``since`` where."""
    off, kept_off = seen.detectors_off(machine.cfg.kernel_args)
    if off:
        machine.replace_reason = f"{off} reported: the detector is off for the rest of this boot"
        machine.replace_cause = "planned"
    elif kept_off and not machine.detectors_note:
        machine.detectors_note = (f"{kept_off} off since {since} (a report's taint: "
                                  "LOCKDEP_NOW_UNRELIABLE)")
