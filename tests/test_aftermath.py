"""What the kernel printed after a test's window closed (lab.run.aftermath), on plain data:
the gap judged as the previous test's, the console backstop, hung tasks as findings."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from lab import proc
from lab.kernel.artifact import Kernel
from lab.results.record import read_findings
from lab.results.verdict import Diagnosis
from lab.run import aftermath, watch
from lab.run.keys import RUN_DIR_KEY
from lab.vm.session import Closed, Machine
from lab.vm.vmconfig import VmConfig

GOLDEN = Path(__file__).parent / "golden" / "splats"
WARN = "WARNING: CPU: 0 PID: 31 at io_uring/io_uring.c:2901 io_ring_exit_work+0x1/0x2"


class FakeMachine:
    """The parts of a Machine the aftermath reads: its windows, what they saw, a console."""

    def __init__(self, console: str = "") -> None:
        self.windows: list[tuple[int, str]] = [(10_000_000, "t::a")]
        self.seen: list[str] = []
        self.replace_reason = ""
        self.replace_cause = ""
        self.detectors_note = ""
        self.cfg = SimpleNamespace(kernel_args=("kasan_multi_shot",))
        self.closed: Closed | None = None
        self.console = console
        self.kernel = SimpleNamespace(spec="debian:7.2", vmlinux=None)
        self.vm = SimpleNamespace(name="main-7.2")
        self.last_test = "t::a"

    def console_since(self, offset: int) -> str:
        return self.console[offset:]

    def flood(self) -> str:
        return ""  # its console stayed under the cap


def _config(run_dir: Path) -> Any:
    return SimpleNamespace(stash={RUN_DIR_KEY: run_dir})


def _gap(*texts: str, taint: int = 0) -> watch.Findings:
    return watch.Findings(records=[{"seq": 200 + i, "level": 4, "ts_us": 12_000_000 + i,
                                    "text": t} for i, t in enumerate(texts)],
                          taint_after=taint, seq=200 + len(texts))


CLOSED = Closed("t::a", seq=199, taint=0, console_offset=0, opened_us=10_000_000)


def test_a_console_flood_between_tests_fails_the_previous_test_once(tmp_path: Path) -> None:
    kernel = Kernel(spec="k", release="7.2.0", image=tmp_path / "bzImage")
    machine = Machine(kernel, run_dir=tmp_path, cache=tmp_path, config=VmConfig(), name="m",
                      call_timeout=10, max_reboots=2)
    vm = SimpleNamespace(flooded=None, name="m")
    machine.vm = vm  # type: ignore[assignment]
    gap = _gap("kernel-lab: end t::a")
    entry, _ = aftermath.judge(CLOSED, gap, machine, where=aftermath.BETWEEN)
    assert entry["verdict"] == "" and not machine.replace_reason
    vm.flooded = proc.Flood(1.0, 1024, 256, log_path=tmp_path / "console-m.log")
    entry, _ = aftermath.judge(CLOSED, gap, machine, where=aftermath.BETWEEN)
    assert entry["verdict"] == "FAIL"
    assert entry["reason"].startswith("the guest flooded its console: more than the console "
                                      "log's cap of 1024 bytes")
    assert f"{tmp_path}/console-m.log keeps" in entry["reason"]
    assert "(after the test's window closed, between tests)" in entry["reason"]
    assert (machine.replace_reason, machine.replace_cause) == (
        "the guest flooded its console", "kernel")
    entry, _ = aftermath.judge(CLOSED, gap, machine, where=aftermath.BETWEEN)
    assert entry["verdict"] == ""  # charged once


def test_a_splat_between_tests_is_the_previous_tests() -> None:
    machine = FakeMachine()
    entry, _ = aftermath.judge(CLOSED, _gap("kernel-lab: end t::a", WARN, "Modules linked in:"),
                               machine, where=aftermath.BETWEEN)  # type: ignore[arg-type]
    assert entry["verdict"] == "FAIL" and entry["where"] == "between tests"
    assert entry["reason"] == ("kernel splat after the test's window closed (between tests): "
                               "WARNING in io_ring_exit_work")
    assert machine.seen == ["WARNING in io_ring_exit_work"]
    quiet, _ = aftermath.judge(CLOSED, _gap("kernel-lab: end t::a"), machine,  # type: ignore[arg-type]
                               where=aftermath.BETWEEN)
    assert quiet["verdict"] == ""
    # Taint is read again as the next window opens: a change in between is the test's.
    tainted, _ = aftermath.judge(CLOSED, _gap("kernel-lab: end t::a", taint=512),
                                 machine, where=aftermath.BETWEEN)  # type: ignore[arg-type]
    assert tainted["verdict"] == "FAIL" and tainted["reason"].endswith("- -> GW")


def test_records_lost_in_the_gap_are_said_even_when_nothing_was_seen() -> None:
    from lab.results.record import Record
    from lab.run.records import charge

    gap = watch.Findings(records=[{"seq": 200, "level": 6, "ts_us": 12_000_000,
                                   "text": "kernel-lab: end t::a"},
                                  {"seq": 4_999, "level": 6, "ts_us": 12_000_001,
                                   "text": "flood"}], taint_after=0, seq=4_999)
    entry, _ = aftermath.judge(CLOSED, gap, FakeMachine(),  # type: ignore[arg-type]
                               where=aftermath.BETWEEN)
    assert entry["verdict"] == "" and entry["kmsg_lost"] == 4_798
    rec = charge(Record(test="t::a", verdict="PASS", duration=1.0), {"test": "t::a", **entry})
    assert rec.verdict == "PASS"
    assert rec.data["after_test"] == {"where": "between tests", "kmsg_lost": 4_798}


def test_a_kasan_report_in_the_gap_keeps_the_guest_and_says_lockdep_is_off() -> None:
    kasan = (GOLDEN / "kasan_double_free_io_uring.log").read_text().splitlines()
    machine = FakeMachine()  # booted with kasan_multi_shot: KASAN keeps reporting
    entry, _ = aftermath.judge(CLOSED, _gap("kernel-lab: end t::a", *kasan), machine,  # type: ignore[arg-type]
                               where=aftermath.BETWEEN)
    assert entry["verdict"] == "FAIL" and entry["reason"].startswith(
        "kernel splat after the test's window closed (between tests): KASAN")
    assert machine.replace_reason == ""
    assert machine.detectors_note.startswith("LOCKDEP off since the gap after t::a")


def test_a_splat_on_the_console_that_no_window_saw_is_a_finding(tmp_path: Path) -> None:
    panic = (GOLDEN / "debian72_sysrq_panic.log").read_text()
    machine = FakeMachine(console=panic)
    aftermath.backstop(_config(tmp_path), machine, after="t::a")  # type: ignore[arg-type]
    found = read_findings(tmp_path)
    assert [f["title"] for f in found] == ["kernel panic: sysrq triggered crash"]
    assert found[0]["fatal"] and "t::a" in found[0]["why"] and found[0]["kernel"] == "debian:7.2"
    # Seen by a window (or a diagnosis): no finding.
    seen = FakeMachine(console=panic)
    seen.seen = ["kernel panic: sysrq triggered crash"]
    aftermath.backstop(_config(tmp_path / "x"), seen, after="t::a")  # type: ignore[arg-type]
    assert read_findings(tmp_path / "x") == []


def test_a_hung_task_from_an_already_written_test_is_a_finding(tmp_path: Path) -> None:
    hung = ["INFO: task python3:412 blocked for more than 30 seconds.",
            "task:python3         state:D stack:0     pid:412", "Call Trace:", " <TASK>",
            " schedule+0x27/0xa0", " io_destroy+0x1a1/0x200", " </TASK>"]
    machine = FakeMachine()
    machine.windows = [(10_000_000, "t::a"), (30_000_000, "t::b"), (50_000_000, "t::c")]
    records = [{"seq": 300 + i, "level": 3, "ts_us": 55_000_000, "text": t}
               for i, t in enumerate(hung)]
    seen = watch.assess(watch.Findings(records=records),
                        watch.Mark(0, 299, 0, ts_us=50_000_000, opened_us=50_000_000),
                        test="t::c", windows=machine.windows)
    aftermath.findings(_config(tmp_path), machine, seen,  # type: ignore[arg-type]
                       read_in="t::c's window")
    found = read_findings(tmp_path)
    assert [(f["title"], f["test"]) for f in found] == [("INFO: task hung in io_destroy", "t::a")]
    assert "began in t::a's window" in found[0]["why"]


class DeadMachine(FakeMachine):
    """A guest that died: its console ends in a panic."""

    def healthy(self) -> bool:
        return False

    def diagnose(self, exc: BaseException, *, console_offset: int) -> Diagnosis:
        self.replace_reason = "crash: the guest died during the test"
        return Diagnosis("CRASH", "the guest died during the test",
                         [{"title": "kernel panic: sysrq triggered crash"}], "Kernel panic")


def test_a_guest_that_dies_after_a_test_makes_it_a_crash(tmp_path: Path) -> None:
    machine = DeadMachine(console=(GOLDEN / "debian72_sysrq_panic.log").read_text())
    machine.closed = CLOSED
    config = _config(tmp_path)
    aftermath.final_window(config, machine, "the guest stopped answering")  # type: ignore[arg-type]
    [entry] = aftermath.drain(config)  # type: ignore[arg-type]
    assert entry["test"] == "t::a" and entry["verdict"] == "CRASH"
    assert entry["reason"] == ("CRASH: the guest died after the test, before the next one "
                               "began (kernel panic: sysrq triggered crash)")
    assert machine.closed is None
    assert read_findings(tmp_path) == []  # the panic is the test's, not a finding
    # With no window to charge (it died before its first test): a finding, never silence.
    (tmp_path / "x").mkdir()
    alone = DeadMachine(console=(GOLDEN / "debian72_sysrq_panic.log").read_text())
    aftermath.final_window(_config(tmp_path / "x"), alone, "the guest stopped answering")  # type: ignore[arg-type]
    assert [f["kind"] for f in read_findings(tmp_path / "x")] == ["GUEST_DIED"]


def test_the_summary_lists_the_findings(tmp_path: Path) -> None:
    from lab.results import summary as summary_mod

    machine = FakeMachine(console=(GOLDEN / "debian72_sysrq_panic.log").read_text())
    aftermath.backstop(_config(tmp_path), machine, after="t::a")  # type: ignore[arg-type]
    got = summary_mod.summarize(tmp_path)
    assert [f["title"] for f in got["findings"]] == ["kernel panic: sysrq triggered crash"]
    lines = summary_mod.summary_lines(got)
    at = lines.index("kernel log findings no test's verdict holds: 1")
    assert lines[at + 1].startswith("  - [debian:7.2] kernel panic: sysrq triggered crash: "
                                    "on the guest's console, in no test's kernel-log window")
