"""Classify kernel splats (oopses, sanitizer reports, warnings, hangs) in log text.

Modelled on syzkaller's ``pkg/report``: find each report's first line, cut the
report out of the surrounding console noise, and give it a one-line title that
stays the same across runs (no addresses, no PIDs) so results can be compared.

Input may be a serial console capture (``[   12.345678] `` timestamps, ``\\r``,
interleaved init/sshd output), ``dmesg`` output with caller ids
(``[   1.0][  T123] ``), syslog priorities (``<4>``), raw ``/dev/kmsg`` records
(``6,339,5140900,-;``), or text with every prefix already stripped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# After its first report the detector stays silent for the rest of the boot (lockdep
# turns itself off; KASAN reports once unless booted with kasan_multi_shot), or the
# guest stays impaired (a hung task, a stuck worker pool): the guest is replaced so
# later tests are checked (detectors_off).
DETECTORS_OFF_AFTER = frozenset({"LOCKDEP", "KASAN", "HUNG_TASK", "WQ_LOCKUP"})
# A KASAN report taints the kernel with LOCKDEP_NOW_UNRELIABLE (mm/kasan/report.c,
# end_report): lockdep is off from then on, even where KASAN itself goes on.
_LOCKDEP_OFF_AFTER = frozenset({"KASAN"})


def detectors_off(kinds: set[str], cmdline: tuple[str, ...] | list[str]) -> tuple[str, str]:
    """(why the guest needs replacing, what stays off if it is kept) after reports of
    ``kinds`` on a kernel booted with ``cmdline``; "" for each when nothing.

    With ``kasan_multi_shot`` KASAN reports every bug, so a KASAN report alone keeps
    the guest: every later test that hits the bug gets its own FAIL, at the price of
    lockdep, which the report's taint turned off (said, not hidden).
    """
    off = set(kinds) & DETECTORS_OFF_AFTER
    multi_shot = "kasan_multi_shot" in cmdline
    if multi_shot:
        off.discard("KASAN")
    kept = "LOCKDEP" if multi_shot and set(kinds) & _LOCKDEP_OFF_AFTER and not off else ""
    return ", ".join(sorted(off)), kept

KINDS = (
    "KASAN", "KFENCE", "UBSAN", "LOCKDEP", "WARNING", "BUG", "NULL_DEREF", "GPF",
    "OOPS", "PANIC", "SOFT_LOCKUP", "HUNG_TASK", "RCU_STALL", "WQ_LOCKUP",
)


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


def _body(line: str) -> str:
    return _PREFIX.sub("", line, count=1).rstrip()


# --- report starts -------------------------------------------------------------

_CUT_HERE = re.compile(r"^-+\[ cut here \]-+$")
_SEPARATOR = re.compile(r"^(?:={20,}|-{20,})$")
_END = re.compile(r"^---\[ end (?:trace|Kernel panic)")
_FUNC = r"([A-Za-z_][\w.$]*)"


@dataclass(frozen=True)
class _Marker:
    kind: str
    pattern: re.Pattern[str]
    fatal: bool
    tag: str = ""  # tells apart markers of one kind that need different titles


# Order matters: the first pattern matching a line wins.
_MARKERS = (
    _Marker("KASAN", re.compile(r"^BUG: KASAN: ([\w-]+) in " + _FUNC), False),
    _Marker("KFENCE", re.compile(r"^BUG: KFENCE: ([\w -]+?) in " + _FUNC), False),
    _Marker("UBSAN", re.compile(r"^UBSAN: ([\w-]+) in (\S+)"), False),
    _Marker("LOCKDEP", re.compile(
        r"^WARNING: (possible circular locking dependency detected|possible recursive"
        r" locking detected|inconsistent lock state|suspicious RCU usage|possible irq"
        r" lock inversion dependency detected)"), False),
    # Lock misuse lockdep reports once per boot as well (kernel/locking/lockdep.c).
    _Marker("LOCKDEP", re.compile(
        r"^WARNING: (lock held when returning to user space|bad unlock balance"
        r" detected|held lock freed)!"), False, "misuse"),
    _Marker("LOCKDEP", re.compile(r"^WARNING: (\S+/\d+) still has locks held!"), False,
            "exit"),
    # print_lock_invalid_wait_context(), print_unlock_imbalance_bug()'s sibling for a
    # nest_lock that is not held (lockdep.c); both turn lockdep off like the others.
    _Marker("LOCKDEP", re.compile(r"^\[ BUG: (Invalid wait context) \]$"), False, "wait"),
    _Marker("LOCKDEP", re.compile(r"^WARNING: (Nested lock was not taken)$"), False, "nest"),
    # Lockdep ran out of a table (print_lockdep_off(), lockdep.c): it turns itself off.
    _Marker("LOCKDEP", re.compile(r"^BUG: (MAX_\w+) too low!"), False, "full"),
    # check_preemption_disabled() (lib/smp_processor_id.c): smp_processor_id(),
    # this_cpu_*() and __this_cpu_*() where the task may migrate.
    _Marker("BUG", re.compile(r"^BUG: using ([\w]+)\(\) in preemptible \[[0-9a-f]+\] code:"
                              r" (.*)"), False, "preempt"),
    # __schedule_bug() (kernel/sched/core.c): "comm/pid/preempt_count".
    _Marker("BUG", re.compile(r"^BUG: scheduling while atomic: (\S+)"), False, "atomic"),
    # bad_page() (mm/page_alloc.c); also "Bad page cache" (mm/filemap.c).
    _Marker("BUG", re.compile(r"^BUG: Bad page (state|cache) in process (.+?)\s+pfn:(\w+)"),
            False, "page"),
    _Marker("BUG", re.compile(
        r"^BUG: (sleeping function called from invalid context) at (\S+)"), False, "sleep"),
    _Marker("WARNING", re.compile(r"^WARNING: CPU: \d+ PID: \d+ at (\S+) " + _FUNC), False),
    # 6.x: "WARNING: fs/aio.c:123 at io_destroy+0x.., CPU#0: comm/pid"
    _Marker("WARNING", re.compile(r"^WARNING: (\S+:\d+) at " + _FUNC + r"[^,]*, CPU#\d+: (.*)"),
            False, "new"),
    _Marker("BUG", re.compile(r"^kernel BUG at (\S+)!"), True, "assert"),
    _Marker("NULL_DEREF", re.compile(
        r"^BUG: (?:kernel NULL pointer dereference, address: ?|unable to handle kernel"
        r" NULL pointer dereference at ?)(\w*)"), True),
    _Marker("BUG", re.compile(
        r"^BUG: unable to handle (page fault for address|kernel paging request at):? ?(\w*)"),
        True),
    _Marker("GPF", re.compile(r"^(?:Oops: )?general protection fault"), True),
    _Marker("OOPS", re.compile(r"^Oops: (?:([a-z][\w ]*?): )?[0-9a-f]{4} \[#(\d+)\]"), True),
    _Marker("PANIC", re.compile(r"^Kernel panic - not syncing: ?(.*)"), True),
    _Marker("SOFT_LOCKUP", re.compile(
        r"^(?:watchdog: )?BUG: soft lockup - (CPU#\d+ stuck for \d+s!) \[(.+):(\d+)\]"), False),
    _Marker("HUNG_TASK", re.compile(
        r"^INFO: task (.+):(\d+) blocked for more than \d+ seconds"), False),
    _Marker("RCU_STALL", re.compile(
        r"^(?:rcu: )?INFO: (rcu_\w+) (detected stalls on CPUs/tasks|self-detected stall"
        r" on CPU)"), False),
    # wq_watchdog_timer_fn() (kernel/workqueue.c): a worker pool made no progress.
    _Marker("WQ_LOCKUP", re.compile(r"^BUG: workqueue lockup - (pool .*?) stuck for (\d+)s!"),
            False),
)

# Kinds after which an "Oops:" line is the same crash, not a new one.
_OOPS_OWNERS = {"BUG", "NULL_DEREF", "GPF"}


def _match_marker(body: str) -> tuple[_Marker, re.Match[str]] | None:
    text = body.lstrip()
    for marker in _MARKERS:
        m = marker.pattern.match(text)
        if m is not None:
            return marker, m
    return None


# --- frames --------------------------------------------------------------------

_FRAME_PATTERNS = (
    # " func+0x12/0x34 [mod]", " ? func+0x..", syzbot " func+0x.. file.c:12"
    re.compile(r"^\s*(\? )?" + _FUNC + r"\+0x[0-9a-f]+/0x[0-9a-f]+"),
    # syzbot-symbolised inline frame " func fs/aio.c:123 [inline]"
    re.compile(r"^\s*(\? )?" + _FUNC + r" \S+:\d+ \[inline\]"),
    # old x86 " [<ffffffff81234567>] ? func+0x.."
    re.compile(r"^\s*\[<[0-9a-f]+>\] (\? )?" + _FUNC + r"\+0x"),
    # powerpc "[c0000..] [c0000..] func+0x../0x.. (unreliable)"
    re.compile(r"^\s*\[[0-9a-f]+\] \[[0-9a-f]+\] " + _FUNC + r"\+0x\S+( \(unreliable\))?"),
)

_TRACE_START = re.compile(r"^\s*Call [Tt]race:|\(in kfence-#\d+\):$")
_TRACE_STOP = re.compile(
    r"^\s*$|^(?:Modules linked in|---\[ end|Allocated by task|Freed by task|The buggy"
    r" address|Kernel Offset|NMI backtrace for cpu|Sending NMI|irq event stamp|INFO: task"
    r" |kfence-#|rcu: )|^={10,}"
)

# Functions that are the reporting machinery, not the bug.
_GENERIC = re.compile(
    r"^(?:_{0,2}dump_stack\w*|show_stack|dump_backtrace|show_trace\w*|print_report|print_address"
    r"_description\w*|kasan_\w+|__kasan_\w+|____kasan_\w+|__asan_\w+|check_memory_region\w*"
    r"|check_region_inline|instrument_\w+|__warn|warn_slowpath\w*|report_bug|handle_bug"
    r"|exc_invalid_op|exc_int3|do_int3\w*|do_trap|do_error_trap|asm_exc_\w+|asm_sysvec_\w+"
    r"|asm_common_interrupt|entry_SYSCALL_64\w*|do_syscall_64|do_syscall_x64|x64_sys_call"
    r"|ubsan_\w+|__ubsan_handle_\w+|lock_acquire|__lock_acquire|validate_chain|check_prevs?"
    r"_add|check_noncircular|check_deadlock|print_\w*_bug|mark_lock\w*|mark_usage|lockdep"
    r"_\w+|_{0,3}might_(?:sleep|resched|fault)|_raw_\w*(?:spin|read|write)_\w*|do_raw_spin_\w+"
    r"|__raw_\w+|spin_lock\w*|v?panic|check_panic_on_warn|end_report|nmi_cpu_backtrace\w*"
    r"|ret_from_fork\w*|__pfx_\w+|debug_check_no_locks_\w+)$"
)

# Allocator entry points KASAN blames for double/invalid frees: the caller is the bug.
_ALLOCATOR = re.compile(
    r"^(?:__?kmem_cache_free|kmem_cache_free|kfree\w*|slab_free\w*|__slab_free|memcpy"
    r"|memset|memmove|strlen|copy_\w+_user)$"
)

# Waiting/scheduling helpers skipped for hangs and stalls, as syzkaller does.
_WAITING = re.compile(
    r"schedule|context_switch|__switch_to|mutex|_lock|down|rwsem|wait|completion|sleep"
    r"|synchronize_|flush_work|rt_mutex|irqentry|stack|unwind|slab|kmem|kasan|rcu"
)


def _is_generic(name: str) -> bool:
    # ".cold"/".isra.0"/".part.0" are compiler clones of the same function.
    return bool(_GENERIC.match(name.split(".")[0])) or name.startswith("0x")


def _frame_name(body: str) -> str | None:
    """The function a stack-trace line names, or None for unreliable/non-frame lines."""
    for pattern in _FRAME_PATTERNS:
        m = pattern.match(body)
        if m is None:
            continue
        groups = m.groups()
        if pattern is _FRAME_PATTERNS[3]:
            return None if groups[1] else groups[0]
        return None if groups[0] else groups[1]
    return None


def _trace(bodies: list[str]) -> list[str]:
    """All reliable frames of the first stack trace in a report, generic ones included."""
    frames: list[str] = []
    started = False
    for body in bodies:
        if not started:
            started = bool(_TRACE_START.search(body))
            continue
        if _TRACE_STOP.search(body):
            break
        name = _frame_name(body)
        if name is not None:
            frames.append(name)
    return frames


def _relevant(frames: list[str], skip: Callable[[str], bool] = _is_generic) -> list[str]:
    return [f for f in frames if not skip(f)]


_RIP = re.compile(r"^\s*(?:RIP: \w{4}:|NIP \[[0-9a-f]+\] |pc : )" + _FUNC + r"(?:\+0x| \()")


def _kernel_ip(bodies: list[str]) -> str | None:
    """Function of the first kernel RIP/NIP line (user-space RIP 0033 is skipped)."""
    for body in bodies:
        if "RIP: 0033:" in body:
            continue
        m = _RIP.match(body)
        if m is not None:
            return m.group(1)
    return None


# --- cutting reports out of the log ------------------------------------------------

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
    kind: str
    tag: str
    marker_fatal: bool
    match: re.Match[str]
    start: int  # first excerpt line (may be a "cut here"/"====" line before the marker)
    head: int  # the marker line
    end: int  # one past the last line


def _is_preamble(body: str) -> bool:
    return bool(_CUT_HERE.match(body) or _SEPARATOR.match(body))


def _cut(bodies: list[str]) -> list[_Raw]:
    starts: list[tuple[int, _Marker, re.Match[str]]] = []
    open_kind = ""
    for i, body in enumerate(bodies):
        found = _match_marker(body)
        if found is None:
            if _END.match(body.lstrip()):
                open_kind = ""
            continue
        marker, m = found
        # A KASAN report repeats its header once per inlined frame; a BUG/GPF is
        # followed by its own "Oops:" line. Both belong to the report already open.
        if marker.kind == open_kind == "KASAN" and starts and i - starts[-1][0] <= 8:
            continue
        if marker.kind == "OOPS" and open_kind in _OOPS_OWNERS and i - starts[-1][0] <= 8:
            continue
        # "Oops [#2]" is the dying kernel faulting again (often on another CPU
        # while printing the first oops); the first one is the bug.
        if marker.kind == "OOPS" and m.group(2) != "1" and any(s[1].fatal for s in starts):
            continue
        starts.append((i, marker, m))
        open_kind = marker.kind
    raws: list[_Raw] = []
    for n, (head, marker, m) in enumerate(starts):
        start = head
        # Take in the "cut here"/"====" line(s) the kernel prints just before.
        while start > 0 and head - start < 2 and _is_preamble(bodies[start - 1].strip()):
            start -= 1
        limit = starts[n + 1][0] if n + 1 < len(starts) else len(bodies)
        end = _report_end(bodies, head, min(limit, head + _MAX_LINES))
        raws.append(_Raw(marker.kind, marker.tag, marker.fatal, m, start, head, end))
    # Drop the next report's "cut here"/"====" preamble from this one's tail.
    fixed: list[_Raw] = []
    for n, raw in enumerate(raws):
        end = raw.end
        if n + 1 < len(raws):
            end = min(end, raws[n + 1].start)
        fixed.append(_Raw(raw.kind, raw.tag, raw.marker_fatal, raw.match, raw.start, raw.head,
                          end))
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


# --- titles ----------------------------------------------------------------------


def _with_func(prefix: str, func: str | None) -> str:
    return f"{prefix} in {func}" if func else prefix


def _lock_site(bodies: list[str]) -> str | None:
    """Function from the "at: func+0x.." lines after "is trying to acquire"/"takes:"."""
    seen = False
    for body in bodies:
        if re.search(r"is trying to (?:acquire|lock:)|\] takes:$| takes:$|just changed the"
                     r" state", body):
            seen = True
            continue
        if not seen:
            continue
        m = re.search(r"\bat: (?:\[<[0-9a-f]+>\] )?" + _FUNC + r"(\+0x)?", body)
        if m is None:
            if body.strip():
                break
            continue
        if m.group(2) and not _is_generic(m.group(1)):
            return m.group(1)
    return None


def _release_site(bodies: list[str]) -> str | None:
    for n, body in enumerate(bodies):
        if "is trying to release lock" in body:
            for later in bodies[n + 1:n + 3]:
                m = re.match(r"\s*\[<[0-9a-f]+>\] " + _FUNC + r"\+0x", later)
                if m is not None:
                    return m.group(1)
    return None


# check_preemption_disabled()'s own helpers, named as the "caller" when the per-CPU
# accessor was not inlined.
_PREEMPT_HELPER = re.compile(r"^(?:debug_smp_processor_id|__this_cpu_preempt_check"
                             r"|check_preemption_disabled|\w*preempt\w*|debug_\w+)$")

# The page allocator's freeing and checking path that finds a bad page, not its cause.
_PAGE_FREEING = re.compile(
    r"^(?:bad_page|free_page_is_bad\w*|check_\w*page\w*|\w*free\w*pages?\w*|free_unref_\w+"
    r"|__?folio_put\w*|folios_put\w*|release_pages|put_page\w*|page_frag_free|\w+_lru\w*"
    r"|\w*free_pcp\w*|\w*free_one_page)$")


def _preempt_caller(bodies: list[str], frames: list[str]) -> str | None:
    """The function named by "caller is func+0x..", else the frame after the helpers."""
    for body in bodies[1:4]:
        m = re.match(r"\s*caller is " + _FUNC + r"\+0x", body)
        if m is None:
            continue
        caller = m.group(1)
        if not _PREEMPT_HELPER.match(caller.split(".")[0]) and not _is_generic(caller):
            return caller
        after = frames[frames.index(caller) + 1:] if caller in frames else frames
        rest = _relevant(after, lambda f: _is_generic(f) or bool(_PREEMPT_HELPER.match(
            f.split(".")[0])))
        return rest[0] if rest else None
    rest = _relevant(frames, lambda f: _is_generic(f) or bool(_PREEMPT_HELPER.match(
        f.split(".")[0])))
    return rest[0] if rest else None


def _held_site(bodies: list[str]) -> str | None:
    """Where the first held lock was taken: " #0: ... (name){....}, at: func+0x..."."""
    for body in bodies:
        m = re.match(r"\s*#\d+: .*\bat: " + _FUNC + r"\+0x", body)
        if m is not None and not _is_generic(m.group(1)):
            return m.group(1)
    return None


def _build(raw: _Raw, bodies: list[str], lines: list[str]) -> Splat:
    part = bodies[raw.head:raw.end]
    frames = _trace(part)
    relevant = _relevant(frames)
    first = relevant[0] if relevant else None
    m = raw.match
    kind = raw.kind
    title = kind
    detail = ""
    fatal = raw.marker_fatal
    if kind in ("KASAN", "KFENCE"):
        bug, func = m.group(1), m.group(2)
        # Several header lines when the access was inlined: the last names the
        # real function.
        for body in part[1:8]:
            again = _match_marker(body)
            if again is not None and again[0].kind == kind:
                func = again[1].group(2)
        if _ALLOCATOR.match(func.split(".")[0]) or _is_generic(func):
            after = frames[frames.index(func) + 1:] if func in frames else relevant
            callers = _relevant(after, lambda f: _is_generic(f) or bool(_ALLOCATOR.match(f)))
            func = callers[0] if callers else func
        access = next((b.strip() for b in part if re.match(r"\s*(Read|Write|Free) of", b)), "")
        rw = access.split(" ", 1)[0] if access.startswith(("Read", "Write")) else ""
        name = "KASAN" if kind == "KASAN" else "KFENCE"
        title = f"{name}: {bug}{' ' + rw if rw else ''} in {func}"
        detail = access or m.group(0)
        if kind == "KFENCE":
            detail = next((b.strip() for b in part if "kfence-#" in b), m.group(0))
    elif kind == "UBSAN":
        title = _with_func(f"UBSAN: {m.group(1)}", first)
        detail = " ".join([m.group(2)] + [b.strip() for b in part[1:2]])
    elif kind == "LOCKDEP" and raw.tag == "misuse":
        what = m.group(1)
        if what == "bad unlock balance detected":
            # The release site is the line print_ip_sym writes after "is trying to release".
            func = _release_site(part) or first
            title = _with_func("WARNING: bad unlock balance", func)
        elif what == "held lock freed":
            callers = _relevant(frames, lambda f: _is_generic(f) or bool(_ALLOCATOR.match(f)))
            title = _with_func("WARNING: held lock freed", callers[0] if callers else first)
        else:  # returning to user space: no stack, only where the lock was taken
            title = _with_func(f"WARNING: {what}", _held_site(part))
        detail = what
    elif kind == "LOCKDEP" and raw.tag == "exit":
        title = _with_func("WARNING: still has locks held", _held_site(part))
        detail = f"task {m.group(1)}"
    elif kind == "LOCKDEP" and not raw.tag:
        what = m.group(1)
        if what == "suspicious RCU usage":
            func = next((f for f in relevant if "rcu" not in f), first)
            title = _with_func("WARNING: suspicious RCU usage", func)
            detail = next((b.strip() for b in part[1:5] if re.search(r"\S+:\d+ ", b)), what)
        else:
            func = _lock_site(part) or first
            prefix = "inconsistent lock state" if "inconsistent" in what else "possible deadlock"
            title = _with_func(prefix, func)
            detail = what
    elif kind == "LOCKDEP" and raw.tag in ("wait", "nest"):
        func = _lock_site(part) or first
        prefix = "BUG: Invalid wait context" if raw.tag == "wait" else \
            "WARNING: nested lock was not taken"
        title = _with_func(prefix, func)
        detail = m.group(1)
    elif kind == "LOCKDEP" and raw.tag == "full":
        # Lockdep's own table is full, not a bug in a function: one title per table.
        title = f"BUG: {m.group(1)} too low!"
        detail = "lockdep turned itself off"
    elif kind == "BUG" and raw.tag == "preempt":
        title = _with_func(f"BUG: using {m.group(1)}() in preemptible code",
                           _preempt_caller(part, frames))
        detail = f"task {m.group(2)}"
    elif kind == "BUG" and raw.tag == "atomic":
        func = next(iter(_relevant(frames, lambda f: _is_generic(f) or bool(
            _WAITING.search(f)))), None)
        title = _with_func("BUG: scheduling while atomic", func)
        detail = m.group(1)
    elif kind == "BUG" and raw.tag == "page":
        func = next(iter(_relevant(frames, lambda f: _is_generic(f) or bool(
            _PAGE_FREEING.search(f)))), None)
        title = _with_func(f"BUG: Bad page {m.group(1)}", func)
        detail = f"process {m.group(2)} pfn:{m.group(3)}"
    elif kind == "WQ_LOCKUP":
        # No stack of its own: the stuck pool's busy work items follow as plain lines.
        title = "BUG: workqueue lockup"
        detail = f"{m.group(1)} stuck for {m.group(2)}s"
    elif kind == "WARNING":
        title = f"WARNING in {m.group(2)}"
        detail = m.group(1) + (f" task {m.group(3)}" if raw.tag == "new" else "")
    elif kind == "BUG" and raw.tag == "sleep":
        title = _with_func("BUG: sleeping function called from invalid context", first)
        detail = m.group(2)
    elif kind == "BUG" and raw.tag == "assert":
        title = _with_func("kernel BUG", _kernel_ip(part) or first)
        detail = m.group(1)
    elif kind == "BUG":
        what = "page fault" if m.group(1).startswith("page") else "kernel paging request"
        title = _with_func(f"BUG: unable to handle {what}", _kernel_ip(part) or first)
        detail = f"address: {m.group(2)}"
    elif kind == "NULL_DEREF":
        title = _with_func("BUG: kernel NULL pointer dereference", _kernel_ip(part) or first)
        detail = f"address: {m.group(1)}"
    elif kind == "GPF":
        title = _with_func("general protection fault", _kernel_ip(part) or first)
        detail = next((b.strip() for b in part[1:3] if b.startswith("KASAN:")), m.group(0))
    elif kind == "OOPS":
        what = m.group(1)
        title = _with_func(f"Oops: {what}" if what else "Oops", _kernel_ip(part) or first)
        detail = part[0].strip()
    elif kind == "PANIC":
        reason = m.group(1).strip()
        title = f"kernel panic: {reason}"
        detail = reason
    elif kind == "SOFT_LOCKUP":
        title = _with_func("BUG: soft lockup", _kernel_ip(part) or first)
        detail = f"{m.group(1)} task {m.group(2)}:{m.group(3)}"
    elif kind == "HUNG_TASK":
        func = next(iter(_relevant(frames, lambda f: _is_generic(f) or bool(
            _WAITING.search(f)))), None)
        title = _with_func("INFO: task hung", func)
        detail = f"task {m.group(1)}:{m.group(2)}"
    elif kind == "RCU_STALL":
        # The stalled CPU's RIP is often inside the unwinder or an allocator
        # that merely got interrupted; fall back to the first real frame then.
        ip = _kernel_ip(part)
        if ip is None or _is_generic(ip) or _WAITING.search(ip):
            ip = next(iter(_relevant(frames, lambda f: _is_generic(f) or bool(
                _WAITING.search(f)))), None)
        func = ip
        title = _with_func("INFO: rcu detected stall", func)
        detail = f"{m.group(1)} {m.group(2)}"
    # Frames above the blamed function are reporting machinery; start there.
    blamed = title.rsplit(" in ", 1)[-1] if " in " in title else ""
    if blamed in relevant:
        relevant = relevant[relevant.index(blamed):]
    elif kind in ("HUNG_TASK", "RCU_STALL"):
        relevant = _relevant(relevant, lambda f: bool(_WAITING.search(f)))
    taint = _find_taint(bodies, raw)
    excerpt = "\n".join(lines[raw.start:min(raw.end, raw.start + _EXCERPT_LINES)])
    return Splat(kind, title, fatal, tuple(relevant[:8]), excerpt, detail, taint)


def _find_taint(bodies: list[str], raw: _Raw) -> str:
    for body in bodies[raw.head:raw.end]:
        found = _taint_of(body)
        if found is not None:
            return found
    if raw.kind == "PANIC":
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
    bodies = [_body(line) for line in lines]
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
        follows = n + 1 < len(splats) and splats[n + 1].kind == "PANIC"
        if not splat.fatal and follows:
            splat = Splat(splat.kind, splat.title, True, splat.frames, splat.excerpt,
                          splat.detail, splat.taint)
        result.append(splat)
    return result
