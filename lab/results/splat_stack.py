"""Read one kernel report's stack: its frames, its kernel IP, the sites its lines name.

A splat kind's entry (lab/results/splat_kinds.py) says which of the ``blame`` rules
below finds the function its title names, and which frames that rule skips; the
rules read an ``Evidence``, the report's lines as lab/results/splat.py cut them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

FUNC = r"(?P<func>[A-Za-z_][\w.$]*)"

_FRAME_PATTERNS = (
    # " func+0x12/0x34 [mod]", " ? func+0x..", syzbot " func+0x.. file.c:12"
    re.compile(r"^\s*(?P<unreliable>\? )?" + FUNC + r"\+0x[0-9a-f]+/0x[0-9a-f]+"),
    # syzbot-symbolised inline frame " func fs/aio.c:123 [inline]"
    re.compile(r"^\s*(?P<unreliable>\? )?" + FUNC + r" \S+:\d+ \[inline\]"),
    # old x86 " [<ffffffff81234567>] ? func+0x.."
    re.compile(r"^\s*\[<[0-9a-f]+>\] (?P<unreliable>\? )?" + FUNC + r"\+0x"),
    # powerpc "[c0000..] [c0000..] func+0x../0x.. (unreliable)"
    re.compile(r"^\s*\[[0-9a-f]+\] \[[0-9a-f]+\] " + FUNC
               + r"\+0x\S+(?P<unreliable> \(unreliable\))?"),
)

_TRACE_START = re.compile(r"^\s*Call [Tt]race:|\(in kfence-#\d+\):$")
_TRACE_STOP = re.compile(
    r"^\s*$|^(?:Modules linked in|---\[ end|Allocated by task|Freed by task|The buggy"
    r" address|Kernel Offset|NMI backtrace for cpu|Sending NMI|irq event stamp|INFO: task"
    r" |kfence-#|rcu: )|^={10,}"
)

# Functions that are the reporting machinery, not the bug, whatever the kind.
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


def is_generic(name: str) -> bool:
    """Whether a frame is reporting machinery (or an address), never the bug."""
    # ".cold"/".isra.0"/".part.0" are compiler clones of the same function.
    return bool(_GENERIC.match(name.split(".")[0])) or name.startswith("0x")


def _frame_name(body: str) -> str | None:
    """The function a stack-trace line names, or None for unreliable/non-frame lines."""
    for pattern in _FRAME_PATTERNS:
        m = pattern.match(body)
        if m is not None:
            return None if m["unreliable"] else m["func"]
    return None


def trace(bodies: list[str]) -> list[str]:
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


def relevant(frames: list[str], skip: re.Pattern[str] | None = None) -> list[str]:
    """``frames`` without the generic ones and those ``skip`` finds."""
    return [f for f in frames if not is_generic(f) and not (skip and skip.search(f))]


@dataclass(frozen=True)
class Evidence:
    """One report's lines (prefixes gone, its first line first) and stack."""

    lines: list[str]
    match: re.Match[str]
    # The first line again, a few lines on: KASAN repeats it per inlined frame.
    again: list[re.Match[str]]
    frames: list[str]

    @property
    def relevant(self) -> list[str]:
        """The frames without the reporting machinery."""
        return relevant(self.frames)

    @property
    def first(self) -> str | None:
        """The first frame that is not reporting machinery."""
        found = self.relevant
        return found[0] if found else None

    def line(self, pattern: str, start: int = 0, stop: int | None = None) -> str:
        """The first of ``lines[start:stop]`` that ``pattern`` finds, stripped; "" if none."""
        return next((b.strip() for b in self.lines[start:stop] if re.search(pattern, b)), "")

    @property
    def rw(self) -> str:
        """" Read"/" Write" from a sanitizer's "Read of size 8 at addr" line, else ""."""
        access = self.line(r"^\s*(Read|Write|Free) of")
        return " " + access.split(" ", 1)[0] if access.startswith(("Read", "Write")) else ""


# A blame rule: the function a report's title names (None: the title names none),
# given the frames its kind skips.
Blame = Callable[[Evidence, re.Pattern[str] | None], str | None]


def first_frame(ev: Evidence, skip: re.Pattern[str] | None) -> str | None:
    """The first frame that is neither machinery nor skipped."""
    found = relevant(ev.frames, skip)
    return found[0] if found else None


def first_frame_or_top(ev: Evidence, skip: re.Pattern[str] | None) -> str | None:
    """The first frame not skipped; the first non-machinery frame if all are skipped."""
    return first_frame(ev, skip) or ev.first


def header(ev: Evidence, skip: re.Pattern[str] | None) -> str | None:
    """The function the first line names; with ``skip``, its caller when it is skipped."""
    # Several header lines when the access was inlined: the last names the real function.
    func = (ev.again[-1] if ev.again else ev.match)["func"]
    if skip is not None and (skip.search(func.split(".")[0]) or is_generic(func)):
        after = ev.frames[ev.frames.index(func) + 1:] if func in ev.frames else ev.relevant
        callers = relevant(after, skip)
        func = callers[0] if callers else func
    return func


_RIP = re.compile(r"^\s*(?:RIP: \w{4}:|NIP \[[0-9a-f]+\] |pc : )" + FUNC + r"(?:\+0x| \()")


def _kernel_ip(bodies: list[str]) -> str | None:
    """Function of the first kernel RIP/NIP line (user-space RIP 0033 is skipped)."""
    for body in bodies:
        if "RIP: 0033:" in body:
            continue
        m = _RIP.match(body)
        if m is not None:
            return m["func"]
    return None


def kernel_ip(ev: Evidence, skip: re.Pattern[str] | None) -> str | None:
    """Where the kernel stopped (RIP/NIP/pc), else the first frame."""
    return _kernel_ip(ev.lines) or ev.first


def stalled_ip(ev: Evidence, skip: re.Pattern[str] | None) -> str | None:
    """Where the CPU stalled, unless that is machinery or skipped: then the first frame."""
    # The stalled CPU's RIP is often inside the unwinder or an allocator that merely
    # got interrupted.
    ip = _kernel_ip(ev.lines)
    if ip is None or is_generic(ip) or (skip is not None and skip.search(ip)):
        return first_frame(ev, skip)
    return ip


def lock_site(ev: Evidence, skip: re.Pattern[str] | None) -> str | None:
    """Where the lock was being taken: the "at: func+0x.." line after "is trying to
    acquire"/"takes:"; else the first frame."""
    seen = False
    for body in ev.lines:
        if re.search(r"is trying to (?:acquire|lock:)|\] takes:$| takes:$|just changed the"
                     r" state", body):
            seen = True
            continue
        if not seen:
            continue
        m = re.search(r"\bat: (?:\[<[0-9a-f]+>\] )?" + FUNC + r"(?P<offset>\+0x)?", body)
        if m is None:
            if body.strip():
                break
            continue
        if m["offset"] and not is_generic(m["func"]):
            return m["func"]
    return ev.first


def release_site(ev: Evidence, skip: re.Pattern[str] | None) -> str | None:
    """The line print_ip_sym writes after "is trying to release lock"; else the first frame."""
    for n, body in enumerate(ev.lines):
        if "is trying to release lock" in body:
            for later in ev.lines[n + 1:n + 3]:
                m = re.match(r"\s*\[<[0-9a-f]+>\] " + FUNC + r"\+0x", later)
                if m is not None:
                    return m["func"]
    return ev.first


def held_site(ev: Evidence, skip: re.Pattern[str] | None) -> str | None:
    """Where the first held lock was taken: " #0: ... (name){....}, at: func+0x..."."""
    for body in ev.lines:
        m = re.match(r"\s*#\d+: .*\bat: " + FUNC + r"\+0x", body)
        if m is not None and not is_generic(m["func"]):
            return m["func"]
    return None


def named_caller(ev: Evidence, skip: re.Pattern[str] | None) -> str | None:
    """The function "caller is func+0x.." names unless skipped, else the frame after the
    skipped ones."""
    for body in ev.lines[1:4]:
        m = re.match(r"\s*caller is " + FUNC + r"\+0x", body)
        if m is None:
            continue
        caller = m["func"]
        if not (skip and skip.search(caller)) and not is_generic(caller):
            return caller
        after = ev.frames[ev.frames.index(caller) + 1:] if caller in ev.frames else ev.frames
        rest = relevant(after, skip)
        return rest[0] if rest else None
    return first_frame(ev, skip)
