"""Classify kernel splats (oopses, sanitizer reports, warnings, hangs) in log text.

Modelled on syzkaller's ``pkg/report``: find each report's first line, cut the
report out of the surrounding console noise, and give it a one-line title that
stays the same across runs (no addresses, no PIDs) so results can be compared.
Each kind of report (its first line's patterns, title format, frames to skip, what
it silences) is one entry of lab/results/splat_kinds.py; this module cuts reports out
of the log and applies their entries.

Input may be a serial console capture (``[   12.345678] `` timestamps, ``\\r``,
interleaved init/sshd output), ``dmesg`` output with caller ids
(``[   1.0][  T123] ``), syslog priorities (``<4>``), raw ``/dev/kmsg`` records
(``6,339,5140900,-;``), or text with every prefix already stripped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from lab.results.splat_kinds import (
    BY_NAME,
    DETECTORS_OFF_AFTER,
    HANG_KINDS,
    KINDS,
    Form,
    Kind,
    detectors_off,
    match_first_line,
)
from lab.results.splat_stack import Evidence, relevant, trace

__all__ = ["DETECTORS_OFF_AFTER", "HANG_KINDS", "KINDS", "Splat", "detectors_off", "line_body",
           "parse", "taint_letters"]


@dataclass(frozen=True)
class Splat:
    """One distinct kernel report found in a log."""

    kind: str
    title: str
    fatal: bool
    frames: tuple[str, ...]
    excerpt: str
    detail: str
    taint: str

    def to_dict(self) -> dict[str, Any]:
        """The splat as a result record carries it."""
        return {"kind": self.kind, "title": self.title, "fatal": self.fatal,
                "frames": list(self.frames), "taint": self.taint, "excerpt": self.excerpt}


# --- taint -------------------------------------------------------------------

# The kernel's taint_flags[] order; bit 0 prints 'P' when set and 'G' when not.
_TAINT_ORDER = "PFSRMBUDAWCIOELKXTNJ"


def taint_letters(value: int) -> str:
    """``/proc/sys/kernel/tainted`` value -> letters as the kernel prints them ("GW")."""
    if value <= 0:
        return ""  # the kernel prints "Not tainted"
    out = ["P" if value & 1 else "G"]
    out += [ch for bit, ch in enumerate(_TAINT_ORDER) if bit and value & (1 << bit)]
    return "".join(out)


def _normalise_taint(letters: set[str]) -> str:
    # "Tainted: [D]=DIE" lists only set flags; add the G the CPU: line would show
    # so both formats give the same string as taint_letters().
    if not letters:
        return ""
    if "P" not in letters:
        letters = letters | {"G"}
    order = "PG" + _TAINT_ORDER[1:]
    return "".join(ch for ch in order if ch in letters)


_TAINT_WORDS = re.compile(r"\bTainted: ((?:[A-Z] *)+)(?=\s|$)")
_TAINT_BRACKETS = re.compile(r"\[([A-Z])\]=[A-Z_]+")


def _taint_of(body: str) -> str | None:
    """Taint letters from one line, "" for "Not tainted", None if the line has none."""
    if re.search(r"\bNot tainted\b", body):
        return ""
    if re.match(r"\s*Tainted: \[", body):  # 6.x: "Tainted: [W]=WARN, [O]=OOT_MODULE"
        return _normalise_taint(set(_TAINT_BRACKETS.findall(body)))
    m = _TAINT_WORDS.search(body)
    if m is None:
        return None
    # The flags are fixed-width columns ("G           OE"); the version stops them.
    letters = set(m.group(1).replace(" ", ""))
    return _normalise_taint(letters)


# --- line prefixes -------------------------------------------------------------

# <pri>, /dev/kmsg "pri,seq,usec,flags;", [timestamp], [caller id]; one space
# after a bracket belongs to the prefix, the rest (frame indent) to the body.
_PREFIX = re.compile(
    r"^(?:<\d+>)?(?:\d+,\d+,\d+,[^;]*;)?"
    r"(?:\[\s*\d+\.\d+\])?(?:\[\s*[TC]\d+\])?(?:(?<=\]) )?"
)


def line_body(line: str) -> str:
    """A log line without its console prefixes (priority, timestamp, caller id)."""
    return _PREFIX.sub("", line, count=1).rstrip()


# --- cutting reports out of the log --------------------------------------------

_CUT_HERE = re.compile(r"^-+\[ cut here \]-+$")
_SEPARATOR = re.compile(r"^(?:={20,}|-{20,})$")
_END = re.compile(r"^---\[ end (?:trace|Kernel panic)")


_MAX_LINES = 150
_EXCERPT_LINES = 100

# Words and shapes that occur in report bodies; three lines in a row without
# any of them (ordinary "NET: Registered ..." console chatter) end a report that
# has no end marker of its own.
_REPORT_WORDS = {
    "CPU", "RIP", "RSP", "RAX", "RBX", "RCX", "RDX", "RBP", "RSI", "RDI", "FS", "CS",
    "CR2", "DR0", "DR3", "PKRU", "Code", "Hardware", "Workqueue", "Tainted", "Call",
    "KASAN", "INFO", "rcu", "page", "flags", "raw", "head", "task", "Kernel", "Oops",
    "BUG", "WARNING", "UBSAN", "Modules", "note", "Free", "Read", "Write", "PGD", "NIP",
    "LR", "REGS", "MSR", "CFAR", "RCU", "Preemption", "hardirqs", "softirqs", "index",
    "shift", "in_atomic", "preempt_count", "Showing", "workqueue", "pool", "caller",
    "turning", "Disabling", "Please", "other",
}
_REPORTISH = re.compile(
    r"^\s|^$|^[#>{*-]|[0-9a-f]{8,}|\block|\btask|held|\bat: |\+0x|\[<|CPU|->|buggy|kasan"
    r"|kfence|stack|[Tt]race|[Tt]ainted|\bsize\b|addr"
)


def _is_chatter(body: str) -> bool:
    if _REPORTISH.search(body):
        return False
    word = re.split(r"[\s:]", body, maxsplit=1)[0]
    return word not in _REPORT_WORDS and not re.match(r"^(?:R\d+|GPR\d+)$", word)


@dataclass(frozen=True)
class _Raw:
    kind: Kind
    form: Form
    match: re.Match[str]
    start: int  # first excerpt line (may be a "cut here"/"====" line before the marker)
    head: int  # the marker line
    end: int  # one past the last line


def _is_preamble(body: str) -> bool:
    return bool(_CUT_HERE.match(body) or _SEPARATOR.match(body))


def _cut(bodies: list[str]) -> list[_Raw]:
    starts: list[tuple[int, Kind, Form, re.Match[str]]] = []
    open_kind: Kind | None = None
    for i, body in enumerate(bodies):
        found = match_first_line(body)
        if found is None:
            if _END.match(body.lstrip()):
                open_kind = None
            continue
        kind, form, m = found
        # A KASAN report repeats its header once per inlined frame; a BUG/GPF is
        # followed by its own "Oops:" line. Both belong to the report already open.
        near = bool(starts) and i - starts[-1][0] <= 8
        if kind.repeats_header and kind is open_kind and near:
            continue
        if kind.echoes_crash and open_kind is not None and open_kind.oopses and near:
            continue
        # "Oops [#2]" is the dying kernel faulting again (often on another CPU
        # while printing the first oops); the first one is the bug.
        if kind.echoes_crash and m["count"] != "1" and any(s[2].fatal for s in starts):
            continue
        starts.append((i, kind, form, m))
        open_kind = kind
    raws: list[_Raw] = []
    for n, (head, kind, form, m) in enumerate(starts):
        start = head
        # Take in the "cut here"/"====" line(s) the kernel prints just before.
        while start > 0 and head - start < 2 and _is_preamble(bodies[start - 1].strip()):
            start -= 1
        limit = starts[n + 1][0] if n + 1 < len(starts) else len(bodies)
        end = _report_end(bodies, head, min(limit, head + _MAX_LINES))
        raws.append(_Raw(kind, form, m, start, head, end))
    # Drop the next report's "cut here"/"====" preamble from this one's tail.
    fixed: list[_Raw] = []
    for n, raw in enumerate(raws):
        end = raw.end
        if n + 1 < len(raws):
            end = min(end, raws[n + 1].start)
        fixed.append(_Raw(raw.kind, raw.form, raw.match, raw.start, raw.head, end))
    return fixed


def _report_end(bodies: list[str], head: int, limit: int) -> int:
    chatter = 0
    last = head
    for i in range(head + 1, limit):
        body = bodies[i].strip()
        if _END.match(body):
            return i + 1
        # KASAN/UBSAN/KFENCE close with the same "====" line they opened with.
        if re.match(r"^={40,}$", body) and i - head > 2:
            return i + 1
        if _is_chatter(bodies[i]):
            chatter += 1
            if chatter >= 3:
                return last + 1
            continue
        chatter = 0
        if body:
            last = i
    return last + 1


# --- one report -------------------------------------------------------------


def _with_func(prefix: str, func: str | None) -> str:
    return f"{prefix} in {func}" if func else prefix


def _build(raw: _Raw, bodies: list[str], lines: list[str]) -> Splat:
    """The splat one cut report is: its kind's entry says how to title it."""
    part = bodies[raw.head:raw.end]
    form = raw.form
    # The first line again a few lines on (KASAN: once per inlined frame).
    again = [found[2] for body in part[1:8]
             if (found := match_first_line(body)) is not None and found[0] is raw.kind]
    ev = Evidence(part, raw.match, again, trace(part))
    fields = {name: value or "" for name, value in raw.match.groupdict().items()}
    title = form.title.format_map({**fields, "rw": ev.rw})
    if form.blame is not None:
        title = _with_func(title, form.blame(ev, form.skip_regex))
    detail = form.detail.format_map(fields) if isinstance(form.detail, str) else form.detail(ev)
    # Frames above the blamed function are reporting machinery; start there.
    frames = ev.relevant
    blamed = title.rsplit(" in ", 1)[-1] if " in " in title else ""
    if blamed in frames:
        frames = frames[frames.index(blamed):]
    elif form.skip_in_stack:
        frames = relevant(frames, form.skip_regex)
    excerpt = "\n".join(lines[raw.start:min(raw.end, raw.start + _EXCERPT_LINES)])
    return Splat(raw.kind.name, title, form.fatal, tuple(frames[:8]), excerpt, detail,
                 _find_taint(bodies, raw))


def _find_taint(bodies: list[str], raw: _Raw) -> str:
    for body in bodies[raw.head:raw.end]:
        found = _taint_of(body)
        if found is not None:
            return found
    if raw.kind.fatal_before:
        # A panic often prints nothing of its own; the crash before it just did.
        for body in reversed(bodies[max(0, raw.head - 30):raw.head]):
            found = _taint_of(body)
            if found is not None:
                return found
    return ""


# --- public entry point --------------------------------------------------------------


def parse(text: str) -> list[Splat]:
    """Every distinct kernel report in ``text``, in order of first appearance."""
    lines = [line.rstrip("\r\n").replace("\r", "") for line in text.split("\n")]
    bodies = [line_body(line) for line in lines]
    splats: list[Splat] = []
    seen: set[tuple[str, str]] = set()
    for raw in _cut(bodies):
        splat = _build(raw, bodies, lines)
        key = (splat.kind, splat.title)
        # One bug reported on several CPUs, or an oops repeated as "[#2]", is
        # still one bug.
        if key in seen:
            continue
        seen.add(key)
        splats.append(splat)
    # Report-only kinds (warnings, sanitizers, hangs) become fatal when the
    # kernel panics right after them (panic_on_warn, softlockup_panic...).
    result: list[Splat] = []
    for n, splat in enumerate(splats):
        follows = n + 1 < len(splats) and BY_NAME[splats[n + 1].kind].fatal_before
        if not splat.fatal and follows:
            splat = Splat(splat.kind, splat.title, True, splat.frames, splat.excerpt,
                          splat.detail, splat.taint)
        result.append(splat)
    return result
