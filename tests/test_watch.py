"""Which of a window's kernel-log records are the test's: lab.run.watch.assess on plain records."""

from __future__ import annotations

from typing import Any

from lab.run.guard import after_wait
from lab.run.watch import Findings, Mark, assess, owner

BEGIN_US = 50_000_000  # the begin marker at 50 s


def _records(*lines: tuple[float, str]) -> list[dict[str, Any]]:
    return [{"seq": 100 + i, "level": 4, "ts_us": int(t * 1e6), "text": text}
            for i, (t, text) in enumerate(lines)]


def _mark() -> Mark:
    return Mark(console_offset=0, seq=99, taint=0, ts_us=BEGIN_US)


HUNG = [
    "INFO: task python3:412 blocked for more than {n} seconds.",
    "      Not tainted 7.2.13+deb14-amd64 #1 Debian 7.2.13-1",
    '"echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.',
    "task:python3         state:D stack:0     pid:412   tgid:412   ppid:1      flags:0x00004002",
    "Call Trace:",
    " <TASK>",
    " __schedule+0x3a2/0xb60",
    " schedule+0x27/0xa0",
    " io_destroy+0x1a1/0x200",
    " __x64_sys_io_destroy+0x12/0x20",
    " do_syscall_64+0x74/0x1c0",
    " </TASK>",
]


def _hung(at: float, blocked: int) -> list[tuple[float, str]]:
    return [(at, line.format(n=blocked)) for line in HUNG]


def test_a_hang_that_began_before_the_test_is_not_charged_to_it() -> None:
    # Reported 3 s into the window, blocked for more than 120 s: it began 117 s earlier.
    got = assess(Findings(_records((50, "kernel-lab: begin t"), *_hung(53, 120))), _mark())
    assert got.splats == [] and [s.kind for s in got.earlier] == ["HUNG_TASK"]
    assert got.problem() == "" and got.detectors_off(()) == ("HUNG_TASK", "")


def test_a_hang_that_began_in_the_test_is_charged() -> None:
    got = assess(Findings(_records((50, "kernel-lab: begin t"), *_hung(53, 2))), _mark())
    assert [s.kind for s in got.splats] == ["HUNG_TASK"] and not got.earlier
    assert not got.early and got.problem().startswith("kernel splat during the test")


def test_a_splat_right_after_the_test_began_names_the_previous_test() -> None:
    warn = "WARNING: CPU: 0 PID: 97 at fs/aio.c:1234 free_ioctx+0x10/0x20"
    early = assess(Findings(_records((50, "kernel-lab: begin t"), (50.2, warn))), _mark())
    late = assess(Findings(_records((50, "kernel-lab: begin t"), (52.5, warn))), _mark())
    assert early.early and not late.early
    assert early.splats[0].title == "WARNING in free_ioctx"


def test_nvme_timeouts_and_taint_are_reported() -> None:
    got = assess(Findings(_records(
        (50, "kernel-lab: begin t"),
        (60, "nvme nvme0: I/O tag 12 (100c) opcode 0x2 (Read) QID 1 timeout, aborting"),
        (61, "nvme nvme0: resetting controller")), taint_after=512), _mark())
    assert len(got.nvme_events) == 2 and got.splats == []
    assert got.taint_changed and got.taint_after == "GW"
    assert "taint changed" in got.problem()


def test_records_the_ring_overwrote_are_counted() -> None:
    lines = [(50, "kernel-lab: begin t")] + [(51, f"flood {n}") for n in range(6)]
    whole = _records(*lines)  # seq 100..106, the mark at 99
    assert assess(Findings(whole), _mark()).lost == 0
    # /dev/kmsg answered EPIPE twice: the reader went on at the oldest record still there.
    overrun = [whole[0], *whole[3:5], whole[6]]
    assert assess(Findings(overrun), _mark()).lost == 3
    # the window's own start overwritten too
    assert assess(Findings(whole[2:]), _mark()).lost == 2


def test_a_taint_that_turned_lockdep_off_keeps_the_guest_and_says_so() -> None:
    # A bad page state taints with LOCKDEP_NOW_UNRELIABLE: lockdep is off, the guest kept.
    got = assess(Findings(_records(
        (50, "kernel-lab: begin t"),
        (51, "BUG: Bad page state in process python3  pfn:0a3c6"),
        (51, "page dumped because: PAGE_FLAGS_CHECK_AT_FREE flag(s) set"),
        (51, "Disabling lock debugging due to kernel taint"))), _mark())
    assert got.lockdep_disabled and got.detectors_off(()) == ("", "LOCKDEP")
    # With no such line, nothing is off.
    clean = assess(Findings(_records((50, "kernel-lab: begin t"))), _mark())
    assert clean.detectors_off(()) == ("", "")


def test_a_hang_that_began_while_the_test_waited_for_a_slot_is_charged_to_it() -> None:
    # The window opened at 50 s; the test waited 10 s for a CPU slot inside it; a task
    # blocked since 51 s is reported at 63 s: it began in this test's window.
    mark = after_wait(_mark(), 10.0)
    got = assess(Findings(_records((50, "kernel-lab: begin t"), *_hung(63, 12))), mark,
                 test="t", windows=[(BEGIN_US, "t")])
    assert [s.kind for s in got.splats] == ["HUNG_TASK"] and not got.earlier
    assert got.problem().startswith("kernel splat during the test")


def test_a_hang_is_charged_to_the_test_in_whose_window_it_began() -> None:
    # Windows opened at 10 s (a), 30 s (b) and 50 s (c); a task blocked for 30 s is
    # reported at 55 s: it began at 25 s, in a's window, not c's.
    windows = [(10_000_000, "a"), (30_000_000, "b"), (BEGIN_US, "c")]
    got = assess(Findings(_records((50, "kernel-lab: begin c"), *_hung(55, 30))), _mark(),
                 test="c", windows=windows)
    assert got.splats == [] and got.earlier == []
    assert [(test, s.kind) for test, s in got.elsewhere] == [("a", "HUNG_TASK")]
    # the guest is replaced: its hung-task detector is off
    assert got.problem() == "" and got.detectors_off(()) == ("HUNG_TASK", "")
    # Before the first window (the boot): no test's, and said so.
    boot = assess(Findings(_records((50, "kernel-lab: begin c"), *_hung(55, 50))), _mark(),
                  test="c", windows=windows)
    assert [s.kind for s in boot.earlier] == ["HUNG_TASK"] and not boot.elsewhere
    assert owner(windows, 29_000_000) == "a" and owner(windows, 5) == ""


def test_a_splat_with_escape_sequences_fails_the_test_with_them_spelled_out() -> None:
    # A hostile kernel's text reaches the user's terminal through the failure message.
    evil = [line.replace("Not tainted", "\x1b]0;pwned\x07\x1b[2J\x9b2JNot tainted")
            for line in HUNG]
    got = assess(Findings(_records((50, "kernel-lab: begin t"),
                                   *[(53, line.format(n=2)) for line in evil])), _mark())
    problem = got.problem()
    assert problem.startswith("kernel splat during the test")
    assert "\\x1b]0;pwned\\x07\\x1b[2J\\x9b2JNot tainted" in problem
    assert not any(c in problem for c in "\x1b\x07\x9b") and "\n" in problem
