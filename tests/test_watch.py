"""Which of a window's kernel-log records are the test's: lab.run.watch.assess on plain records."""

from __future__ import annotations

from typing import Any

from lab.run.watch import Findings, Mark, assess

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
