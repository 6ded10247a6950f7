"""Golden tests for lab.splat: real kernel reports in, stable classification out."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import pytest

from lab.results.splat import Splat, parse, taint_letters

GOLDEN = Path(__file__).parent / "golden" / "splats"
FIXTURES = sorted(GOLDEN.glob("*.log"))
# Only the first frames are pinned: deeper frames depend on unwinder noise that
# the title and kind do not.
FRAMES_PINNED = 3


def _summary(splats: list[Splat]) -> dict[str, list[object]]:
    return {
        "kinds": [s.kind for s in splats],
        "titles": [s.title for s in splats],
        "fatal": [s.fatal for s in splats],
        "first_frames": [list(s.frames[:FRAMES_PINNED]) for s in splats],
        "taint": [s.taint for s in splats],
    }


def test_enough_fixtures() -> None:
    assert len(FIXTURES) >= 20
    for log in FIXTURES:
        assert log.with_suffix(".json").is_file(), f"{log.name} has no golden .json"
        assert len(log.read_text(encoding="utf-8").splitlines()) < 150, log.name


@pytest.mark.parametrize("log", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_golden(log: Path) -> None:
    expected = json.loads(log.with_suffix(".json").read_text(encoding="utf-8"))
    expected.pop("_source", None)
    got = _summary(parse(log.read_text(encoding="utf-8")))
    if got != expected:
        want_text = json.dumps(expected, indent=2).splitlines()
        got_text = json.dumps(got, indent=2).splitlines()
        diff = "\n".join(difflib.unified_diff(want_text, got_text, "expected", "got", lineterm=""))
        pytest.fail(f"{log.name} classification changed:\n{diff}")


@pytest.mark.parametrize("log", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_excerpt_is_from_the_log(log: Path) -> None:
    text = log.read_text(encoding="utf-8")
    lines = {line.rstrip("\r") for line in text.split("\n")}
    for splat in parse(text):
        excerpt = splat.excerpt.split("\n")
        assert 1 <= len(excerpt) <= 100
        assert all(line in lines for line in excerpt)
        # Timestamps are kept verbatim so the excerpt can be found in the log.
        assert "\r" not in splat.excerpt


def test_boot_oops_excerpt_and_detail() -> None:
    text = (GOLDEN / "boot_int3_oops_panic.log").read_text(encoding="utf-8")
    oops, panic = parse(text)
    assert oops.excerpt.startswith("[    1.335181] Oops: int3: 0000 [#1] SMP NOPTI")
    assert oops.excerpt.endswith("---[ end trace 0000000000000000 ]---")
    assert "Oops: int3" in oops.detail
    end = "---[ end Kernel panic - not syncing: Fatal exception in interrupt ]---"
    assert panic.excerpt.endswith(end)
    assert panic.detail == "Fatal exception in interrupt"


def test_details() -> None:
    def only(name: str) -> Splat:
        found = parse((GOLDEN / f"{name}.log").read_text(encoding="utf-8"))
        return found[0]

    assert only("warning_interleaved_console").detail == "fs/dax.c:460"
    assert only("warning_new_format_ext4").detail == "fs/ext4/inode.c:3938 task syz.0.18/5892"
    assert only("hung_task_nbd").detail == "task syz-executor301:5181"
    assert only("kernel_bug_ext4_panic").detail == "fs/ext4/inline.c:240"
    assert only("null_deref_module").detail == "address: 0000000000000014"
    assert only("kasan_slab_oob_docs").detail.startswith("Write of size 1 at addr")
    assert only("sleeping_in_atomic").detail == "kernel/stop_machine.c:135"


def test_timestamps_optional_and_crlf() -> None:
    bare = (GOLDEN / "warning_new_format_ext4.log").read_text(encoding="utf-8")
    stamped = "\r\n".join(f"[  {n:3d}.000001] {line}" for n, line in enumerate(bare.splitlines()))
    with_ids = "\n".join(f"<4>[  {n:3d}.000001][  T5892] {line}"
                         for n, line in enumerate(bare.splitlines()))
    plain = _summary(parse(bare))
    assert _summary(parse(stamped)) == plain
    assert _summary(parse(with_ids)) == plain


def test_same_bug_twice_is_reported_once() -> None:
    text = (GOLDEN / "kfence_uaf_read.log").read_text(encoding="utf-8")
    assert len(parse(text + "\n" + text)) == 1


@pytest.mark.parametrize(
    "line",
    [
        "[    0.000000] lockdep: fixing up alternatives",
        "[    0.865950] PCI: Using host bridge windows from ACPI; if necessary, use"
        ' "pci=nocrs" and report a bug',
        "Nov 21 12:58:23 vm sshd[412]: Invalid user panic from 10.0.2.2 port 51234",
        "sshd[412]: error: Kernel panic - not syncing: echoed by a user",
        "[  163.048680] traps: fsgsbase_64[417] general protection fault ip:202c10"
        " sp:7f9aabb32e68 error:0",
        "[    0.391035] NMI watchdog: Perf NMI watchdog permanently disabled",
        "[    0.000000] rcu: Preemptible hierarchical RCU implementation.",
        "virtme-ng-init: mounting /proc, WARNING is just a word here",
        "audit: type=1400 apparmor=\"DENIED\" operation=\"open\" name=\"/proc/sys/kernel/tainted\"",
        "kernel.panic_on_warn = 1",
    ],
)
def test_no_false_positive(line: str) -> None:
    assert parse(line) == []


def test_empty_and_clean_input() -> None:
    assert parse("") == []
    assert parse("\n\r\n") == []


@pytest.mark.parametrize(
    ("value", "letters"),
    [
        (0, ""),
        (1, "P"),
        (512, "GW"),  # TAINT_WARN
        (128, "GD"),  # TAINT_DIE
        (1 | 4096, "PO"),  # proprietary + out-of-tree
        (4096 | 8192, "GOE"),
        (16384, "GL"),  # soft lockup
        (1 << 17, "GT"),  # randstruct
        (sum(1 << b for b in range(20)), "PFSRMBUDAWCIOELKXTNJ"),
    ],
)
def test_taint_letters(value: int, letters: str) -> None:
    assert taint_letters(value) == letters


def test_taint_line_formats_agree_with_taint_letters() -> None:
    cpu_line = "CPU: 0 PID: 5 Comm: x Tainted: G        W   E      6.4.0-rc3+ #49\n"
    bracket = "kernel BUG at a.c:1!\nTainted: [W]=WARN, [E]=UNSIGNED_MODULE\n"
    want = taint_letters((1 << 9) | (1 << 13))
    assert parse("kernel BUG at a.c:1!\n" + cpu_line)[0].taint == want
    assert parse(bracket)[0].taint == want


def test_details_of_the_detectors_added_for_the_debug_variant() -> None:
    def only(name: str) -> Splat:
        return parse((GOLDEN / f"{name}.log").read_text(encoding="utf-8"))[0]

    wq = only("workqueue_lockup_repeated")
    assert wq.kind == "WQ_LOCKUP"
    assert wq.detail == "pool cpus=0 node=0 flags=0x0 nice=0 stuck for 101s"
    assert "Showing busy workqueues" in wq.excerpt  # the busy pools are the evidence
    assert only("scheduling_while_atomic_softirq").detail == "syz-fuzzer/2188/0x00000101"
    assert only("bad_page_state_page_owner").detail == "process syz-executor209 pfn:7deea"
    assert only("preemptible_smp_processor_id_ext4").detail == "task systemd-rfkill/6731"
    assert only("lockdep_max_chain_hlocks").detail == "lockdep turned itself off"
    # Each lockdep report turns lockdep off for the rest of the boot.
    for name in ("lockdep_invalid_wait_context", "lockdep_nested_lock_not_taken_then_oops",
                 "lockdep_max_chain_hlocks", "lockdep_max_stack_trace_entries"):
        assert only(name).kind == "LOCKDEP", name


@pytest.mark.parametrize("table", ["KEYS", "ENTRIES", "CHAINS", "CHAIN_HLOCKS"])
def test_every_lockdep_table_that_runs_out_is_its_own_title(table: str) -> None:
    # print_lockdep_off()'s lines, as lockdep.c prints them for each of its tables.
    text = (f"[   61.201001] BUG: MAX_LOCKDEP_{table} too low!\n"
            "[   61.201002] turning off the locking correctness validator.\n"
            "[   61.201003] CPU: 1 PID: 412 Comm: python3 Not tainted 7.2.13-lab #1\n")
    (found,) = parse(text)
    assert (found.kind, found.title) == ("LOCKDEP", f"BUG: MAX_LOCKDEP_{table} too low!")
