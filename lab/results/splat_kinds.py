"""The kinds of kernel splat: one table entry per kind, read by lab/results/splat.py.

Like syzkaller's ``pkg/report`` (``linuxOopses``: a header, then formats of title
pattern, title format and frames to skip), each ``Kind`` below holds all there is
to know about one kind of report:
- its ``forms``: the first line's pattern (named groups), the title format over those
  groups, the rule that finds the function the title blames and the frames that rule
  skips, the detail line, whether the report alone means the kernel died;
- how its reports are cut out of a log (a header that repeats, an "Oops:" line that
  belongs to the crash before it, a panic that makes the report before it fatal);
- what a report silences: whether the guest must be replaced after one, which boot
  option keeps the detector reporting, which other detector it turns off for good.

Adding a kind is one entry here and one real report in tests/golden/splats (a ``.log``
and the ``.json`` of what it must give); tests/test_splat_kinds.py holds the two
together. The first form, in table order, whose pattern matches a line wins.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from lab.results.splat_stack import (
    FUNC,
    Blame,
    Evidence,
    first_frame,
    first_frame_or_top,
    header,
    held_site,
    kernel_ip,
    lock_site,
    named_caller,
    release_site,
    stalled_ip,
)


@dataclass(frozen=True)
class Form:
    """One shape of a kind's first line, and how a report of that shape is titled."""

    pattern: str  # matched at the start of a line, timestamps and indent gone
    # str.format over the pattern's named groups (and ``rw``: " Read"/" Write" from
    # a sanitizer's access line); " in FUNC" follows when ``blame`` finds a function.
    title: str
    detail: str | Callable[[Evidence], str]  # a format like ``title``, or a rule
    blame: Blame | None = None
    skip: str = ""  # frames ``blame`` passes over (searched in the function's name)
    # The stack shown starts at the blamed function; when that is not in it, drop
    # the frames ``skip`` finds instead (hangs: the waiting machinery).
    skip_in_stack: bool = False
    fatal: bool = False  # the report alone means the kernel died
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)
    skip_regex: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", re.compile(self.pattern))
        object.__setattr__(self, "skip_regex", re.compile(self.skip) if self.skip else None)


@dataclass(frozen=True)
class Kind:
    """One kind of kernel report: its forms, how it is cut, what it silences."""

    name: str
    forms: tuple[Form, ...]
    # The first line repeats within a report (KASAN: once per inlined frame).
    repeats_header: bool = False
    # A crash that prints its own "Oops:" line right after its first line.
    oopses: bool = False
    # The "Oops:" line itself: after a crash that oopses it is that crash's, and its
    # ``count`` group past 1 after any fatal report is the dying kernel faulting again.
    echoes_crash: bool = False
    # The report just before this one was fatal (panic_on_warn, softlockup_panic...),
    # and the taint line may be in that report rather than in this one.
    fatal_before: bool = False
    # After one report the guest is replaced: the detector stays silent for the rest
    # of the boot (lockdep turns itself off; KASAN reports once unless
    # ``kept_by``), or the guest stays impaired (a hung task, a stuck worker pool).
    replaces_guest: bool = False
    kept_by: str = ""  # the boot option that keeps the detector reporting
    # Detectors a report turns off for good even when the guest is kept: a KASAN
    # report taints the kernel with LOCKDEP_NOW_UNRELIABLE (mm/kasan/report.c).
    turns_off: frozenset[str] = frozenset()
    # A task or CPU made no progress: a test cut short with this report hung.
    stalls: bool = False


# Allocator entry points KASAN blames for double/invalid frees: the caller is the bug.
_ALLOCATOR = (r"^(?:__?kmem_cache_free|kmem_cache_free|kfree\w*|slab_free\w*|__slab_free"
              r"|memcpy|memset|memmove|strlen|copy_\w+_user)$")
# Waiting/scheduling helpers skipped for hangs and stalls, as syzkaller does.
_WAITING = (r"schedule|context_switch|__switch_to|mutex|_lock|down|rwsem|wait|completion"
            r"|sleep|synchronize_|flush_work|rt_mutex|irqentry|stack|unwind|slab|kmem|kasan|rcu")
# check_preemption_disabled()'s own helpers, named as the "caller" when the per-CPU
# accessor was not inlined (".isra.0" and other clone suffixes included).
_PREEMPT_HELPER = (r"^(?:debug_smp_processor_id|__this_cpu_preempt_check"
                   r"|check_preemption_disabled|\w*preempt\w*|debug_\w+)(?:\.|$)")
# The page allocator's freeing and checking path that finds a bad page, not its cause.
_PAGE_FREEING = (
    r"^(?:bad_page|free_page_is_bad\w*|check_\w*page\w*|\w*free\w*pages?\w*|free_unref_\w+"
    r"|__?folio_put\w*|folios_put\w*|release_pages|put_page\w*|page_frag_free|\w+_lru\w*"
    r"|\w*free_pcp\w*|\w*free_one_page)$")

_ACCESS = r"^\s*(Read|Write|Free) of"


def _ubsan_detail(ev: Evidence) -> str:
    return " ".join([ev.match["where"]] + [b.strip() for b in ev.lines[1:2]])


TABLE: tuple[Kind, ...] = (
    Kind("KASAN", (
        Form(r"^BUG: KASAN: (?P<bug>[\w-]+) in " + FUNC, "KASAN: {bug}{rw}",
             lambda ev: ev.line(_ACCESS) or ev.match[0], header, _ALLOCATOR),
    ), repeats_header=True, replaces_guest=True, kept_by="kasan_multi_shot",
        turns_off=frozenset({"LOCKDEP"})),
    Kind("KFENCE", (
        Form(r"^BUG: KFENCE: (?P<bug>[\w -]+?) in " + FUNC, "KFENCE: {bug}{rw}",
             lambda ev: ev.line("kfence-#") or ev.match[0], header, _ALLOCATOR),
    )),
    Kind("UBSAN", (
        Form(r"^UBSAN: (?P<bug>[\w-]+) in (?P<where>\S+)", "UBSAN: {bug}", _ubsan_detail,
             first_frame),
    )),
    # Every lockdep report turns lockdep off for the rest of the boot (lockdep.c).
    Kind("LOCKDEP", (
        Form(r"^WARNING: (?P<what>possible circular locking dependency detected|possible"
             r" recursive locking detected|possible irq lock inversion dependency detected)",
             "possible deadlock", "{what}", lock_site),
        Form(r"^WARNING: (?P<what>inconsistent lock state)", "inconsistent lock state",
             "{what}", lock_site),
        Form(r"^WARNING: (?P<what>suspicious RCU usage)", "WARNING: suspicious RCU usage",
             lambda ev: ev.line(r"\S+:\d+ ", 1, 5) or ev.match["what"], first_frame_or_top,
             "rcu"),
        # Lock misuse, reported once per boot as well.
        Form(r"^WARNING: (?P<what>lock held when returning to user space)!",
             "WARNING: {what}", "{what}", held_site),  # no stack: where the lock was taken
        Form(r"^WARNING: (?P<what>bad unlock balance detected)!",
             "WARNING: bad unlock balance", "{what}", release_site),
        Form(r"^WARNING: (?P<what>held lock freed)!", "WARNING: held lock freed", "{what}",
             first_frame_or_top, _ALLOCATOR),
        Form(r"^WARNING: (?P<task>\S+/\d+) still has locks held!",
             "WARNING: still has locks held", "task {task}", held_site),
        # print_lock_invalid_wait_context(), and print_unlock_imbalance_bug()'s sibling
        # for a nest_lock that is not held.
        Form(r"^\[ BUG: (?P<what>Invalid wait context) \]$", "BUG: Invalid wait context",
             "{what}", lock_site),
        Form(r"^WARNING: (?P<what>Nested lock was not taken)$",
             "WARNING: nested lock was not taken", "{what}", lock_site),
        # Lockdep ran out of a table (print_lockdep_off()): not a bug in a function,
        # one title per table.
        Form(r"^BUG: (?P<table>MAX_\w+) too low!", "BUG: {table} too low!",
             "lockdep turned itself off"),
    ), replaces_guest=True),
    Kind("WARNING", (
        Form(r"^WARNING: CPU: \d+ PID: \d+ at (?P<file>\S+) " + FUNC, "WARNING", "{file}",
             header),
        # 6.x: "WARNING: fs/aio.c:123 at io_destroy+0x.., CPU#0: comm/pid"
        Form(r"^WARNING: (?P<file>\S+:\d+) at " + FUNC + r"[^,]*, CPU#\d+: (?P<task>.*)",
             "WARNING", "{file} task {task}", header),
    )),
    Kind("BUG", (
        # check_preemption_disabled() (lib/smp_processor_id.c): smp_processor_id(),
        # this_cpu_*() and __this_cpu_*() where the task may migrate.
        Form(r"^BUG: using (?P<accessor>\w+)\(\) in preemptible \[[0-9a-f]+\] code:"
             r" (?P<task>.*)", "BUG: using {accessor}() in preemptible code", "task {task}",
             named_caller, _PREEMPT_HELPER),
        # __schedule_bug() (kernel/sched/core.c): "comm/pid/preempt_count".
        Form(r"^BUG: scheduling while atomic: (?P<task>\S+)", "BUG: scheduling while atomic",
             "{task}", first_frame, _WAITING),
        # bad_page() (mm/page_alloc.c); also "Bad page cache" (mm/filemap.c).
        Form(r"^BUG: Bad page (?P<what>state|cache) in process (?P<process>.+?)\s+"
             r"pfn:(?P<pfn>\w+)", "BUG: Bad page {what}", "process {process} pfn:{pfn}",
             first_frame, _PAGE_FREEING),
        Form(r"^BUG: sleeping function called from invalid context at (?P<at>\S+)",
             "BUG: sleeping function called from invalid context", "{at}", first_frame),
        Form(r"^kernel BUG at (?P<file>\S+)!", "kernel BUG", "{file}", kernel_ip, fatal=True),
        Form(r"^BUG: unable to handle page fault for address:? ?(?P<address>\w*)",
             "BUG: unable to handle page fault", "address: {address}", kernel_ip, fatal=True),
        Form(r"^BUG: unable to handle kernel paging request at:? ?(?P<address>\w*)",
             "BUG: unable to handle kernel paging request", "address: {address}", kernel_ip,
             fatal=True),
    ), oopses=True),
    Kind("NULL_DEREF", (
        Form(r"^BUG: (?:kernel NULL pointer dereference, address: ?|unable to handle kernel"
             r" NULL pointer dereference at ?)(?P<address>\w*)",
             "BUG: kernel NULL pointer dereference", "address: {address}", kernel_ip,
             fatal=True),
    ), oopses=True),
    Kind("GPF", (
        Form(r"^(?:Oops: )?general protection fault", "general protection fault",
             lambda ev: ev.line("^KASAN:", 1, 3) or ev.match[0], kernel_ip, fatal=True),
    ), oopses=True),
    Kind("OOPS", (
        Form(r"^Oops: (?P<what>[a-z][\w ]*?): [0-9a-f]{4} \[#(?P<count>\d+)\]", "Oops: {what}",
             lambda ev: ev.lines[0].strip(), kernel_ip, fatal=True),
        Form(r"^Oops: [0-9a-f]{4} \[#(?P<count>\d+)\]", "Oops",
             lambda ev: ev.lines[0].strip(), kernel_ip, fatal=True),
    ), echoes_crash=True),
    Kind("PANIC", (
        Form(r"^Kernel panic - not syncing:\s*(?P<reason>.*)", "kernel panic: {reason}",
             "{reason}", fatal=True),
    ), fatal_before=True),
    Kind("SOFT_LOCKUP", (
        Form(r"^(?:watchdog: )?BUG: soft lockup - (?P<cpu>CPU#\d+ stuck for \d+s!)"
             r" \[(?P<comm>.+):(?P<pid>\d+)\]", "BUG: soft lockup", "{cpu} task {comm}:{pid}",
             kernel_ip),
    ), stalls=True),
    Kind("HUNG_TASK", (
        Form(r"^INFO: task (?P<comm>.+):(?P<pid>\d+) blocked for more than \d+ seconds",
             "INFO: task hung", "task {comm}:{pid}", first_frame, _WAITING,
             skip_in_stack=True),
    ), replaces_guest=True, stalls=True),
    Kind("RCU_STALL", (
        Form(r"^(?:rcu: )?INFO: (?P<flavour>rcu_\w+) (?P<what>detected stalls on CPUs/tasks"
             r"|self-detected stall on CPU)", "INFO: rcu detected stall", "{flavour} {what}",
             stalled_ip, _WAITING, skip_in_stack=True),
    ), stalls=True),
    # wq_watchdog_timer_fn() (kernel/workqueue.c): a worker pool made no progress. No
    # stack of its own: the stuck pool's busy work items follow as plain lines.
    Kind("WQ_LOCKUP", (
        Form(r"^BUG: workqueue lockup - (?P<pool>pool .*?) stuck for (?P<secs>\d+)s!",
             "BUG: workqueue lockup", "{pool} stuck for {secs}s"),
    ), replaces_guest=True, stalls=True),
)

BY_NAME = {kind.name: kind for kind in TABLE}
KINDS = tuple(BY_NAME)
DETECTORS_OFF_AFTER = frozenset(kind.name for kind in TABLE if kind.replaces_guest)
HANG_KINDS = frozenset(kind.name for kind in TABLE if kind.stalls)


def match_first_line(body: str) -> tuple[Kind, Form, re.Match[str]] | None:
    """The kind and form whose pattern a report's first line matches, in table order."""
    text = body.lstrip()
    for kind in TABLE:
        for form in kind.forms:
            m = form.regex.match(text)
            if m is not None:
                return kind, form, m
    return None


def detectors_off(kinds: set[str], cmdline: tuple[str, ...] | list[str]) -> tuple[str, str]:
    """(why the guest needs replacing, what stays off if it is kept) after reports of
    ``kinds`` on a kernel booted with ``cmdline``; "" for each when nothing.

    With ``kasan_multi_shot`` KASAN reports every bug, so a KASAN report alone keeps
    the guest: every later test that hits the bug gets its own FAIL, at the price of
    lockdep, which the report's taint turned off (said, not hidden).
    """
    found = [BY_NAME[k] for k in sorted(set(kinds)) if k in BY_NAME]
    kept = [k for k in found if k.replaces_guest and k.kept_by and k.kept_by in cmdline]
    off = sorted(k.name for k in found if k.replaces_guest and k not in kept)
    still_off = sorted({name for k in kept for name in k.turns_off}) if not off else []
    return ", ".join(off), ", ".join(still_off)
