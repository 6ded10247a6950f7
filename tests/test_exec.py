"""`lab exec` without a guest: its command line's checks (one line, exit 2, nothing
written), the C build, and how a program's end and its kernel-log window fold into a
verdict (real splats from the golden console logs, folded by lab.results.verdict)."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
from pathlib import Path

import pytest

from lab.errors import UserError
from lab.inside.exec import (
    DEFAULT_TIMEOUT,
    Output,
    build_c,
    describe_exit,
    judge,
    parse_timeout,
    program_of,
)
from lab.results import splat
from lab.results.verdict import Diagnosis, fold
from lab.run.watch import Assessment

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden" / "splats"


def lab_exec(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab.cli", "exec", "--results",
                           str(tmp_path / "results"), *args],
                          capture_output=True, text=True, timeout=120, cwd=REPO)


@pytest.mark.parametrize(("args", "says"), [
    (["--kernel", "debian:7.2"], "needs `-- PROGRAM [ARGS...]`"),
    (["--kernel", "debian:7.2", "/bin/true"], "needs `-- PROGRAM [ARGS...]` after its "
                                              "options (got /bin/true)"),
    (["--", "/no/such/program"], "/no/such/program: no such file"),
    (["--", "/tmp"], "/tmp: a directory"),
    (["--", "README.md"], "README.md: neither an ELF binary, a #! script nor a .c file"),
    (["--timeout", "0", "--", "/bin/true"], "--timeout 0: give the seconds"),
    (["--timeout", "soon", "--", "/bin/true"], "--timeout soon: give the seconds"),
    (["--kernel", "nosuch:1", "--", "/bin/true"], "nosuch:1"),
    (["--cpus", "0", "--", "/bin/true"], "--cpus"),
])
def test_a_mistake_is_one_line_and_exit_2_with_nothing_written(
        tmp_path: Path, args: list[str], says: str) -> None:
    res = lab_exec(tmp_path, *args)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lab: error: "), res.stderr
    assert says in lines[0], lines[0]
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def test_a_c_program_that_does_not_build_is_the_users_mistake_and_leaves_no_run(
        tmp_path: Path) -> None:
    bad = tmp_path / "repro.c"
    bad.write_text("int main(void) { return undeclared; }\n")
    res = lab_exec(tmp_path, "--", str(bad))
    assert res.returncode == 2, res.stdout + res.stderr
    assert "does not build with `cc -O2 -pthread`" in res.stderr and "undeclared" in res.stderr
    assert not any((tmp_path / "results").iterdir())


def test_the_program_is_named_by_its_file_and_pinned_by_its_hash(tmp_path: Path) -> None:
    script = tmp_path / "repro.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    p = program_of(["--", str(script), "-x", "--kernel"])
    assert p.test == "exec::repro.sh" and p.args == ("-x", "--kernel")
    assert p.sha256 == hashlib.sha256(script.read_bytes()).hexdigest()
    assert program_of(["--", "/bin/true"]).runs_as == "true"
    c = tmp_path / "r.c"
    c.write_text("int main(void) { return 0; }\n")
    assert program_of(["--", str(c)]).runs_as == "r" and program_of(["--", str(c)]).is_c


def test_a_c_program_is_built_with_pthread(tmp_path: Path) -> None:
    src = tmp_path / "threads.c"
    src.write_text("#include <pthread.h>\nstatic void *f(void *a) { return a; }\n"
                   "int main(void) { pthread_t t; pthread_create(&t, 0, f, 0); "
                   "pthread_join(t, 0); return 7; }\n")
    out = build_c(program_of(["--", str(src)]), tmp_path)
    assert out == tmp_path / "threads" and out.read_bytes().startswith(b"\x7fELF")
    assert subprocess.run([str(out)]).returncode == 7


def test_timeouts() -> None:
    assert parse_timeout(None) == DEFAULT_TIMEOUT and parse_timeout("5") == 5.0
    for bad in ("-1", "0.5", "86401", "nan", "x"):
        with pytest.raises(UserError, match="--timeout"):
            parse_timeout(bad)


def _folded(**kwargs: object) -> tuple[str, str]:
    base: dict[str, object] = {"status": 0, "seconds": 1.0, "diagnosis": None, "seen": None,
                               "tail": "", "data": {}}
    evidence = judge(**{**base, **kwargs})  # type: ignore[arg-type]
    return fold(evidence)


def test_exit_zero_and_a_quiet_log_pass_and_an_exit_n_fails_with_the_output_tail() -> None:
    assert _folded(seen=Assessment()) == ("PASS", "")
    ev = judge(status=3, seconds=1.0, diagnosis=None, seen=Assessment(), tail="last words",
               data={"exit_status": 3})
    assert fold(ev) == ("FAIL", "exit 3") and ev.excerpt == "last words"
    assert describe_exit(139) == "exit 139 (SIGSEGV, if a signal ended it)"
    assert describe_exit(200) == "exit 200"


def test_a_splat_in_the_window_fails_and_a_fatal_one_crashes_with_its_title() -> None:
    warning = splat.parse((GOLDEN / "lockdep_bad_unlock_balance.log").read_text())
    assert warning and not any(s.fatal for s in warning)
    verdict, reason = _folded(seen=Assessment(splats=warning), status=0)
    assert verdict == "FAIL" and warning[0].title in reason
    oops = [s for s in splat.parse((GOLDEN / "null_deref_module.log").read_text()) if s.fatal]
    assert oops
    ev = judge(status=1, seconds=1.0, diagnosis=None, seen=Assessment(splats=oops), tail="",
               data={})
    verdict, reason = fold(ev)
    assert verdict == "CRASH" and oops[0].title in reason and "the program: exit 1" in reason
    assert ev.splats[0]["title"] == oops[0].title and oops[0].title in ev.excerpt


def test_a_taint_the_program_left_fails() -> None:
    seen = Assessment(taint_before="", taint_after="W", taint_changed=True)
    assert _folded(seen=seen) == ("FAIL", "the kernel's taint changed during the test: - -> W")


def test_a_dead_or_hung_guest_is_the_diagnosis() -> None:
    found = splat.parse((GOLDEN / "debian72_sysrq_panic.log").read_text())
    crash = Diagnosis("CRASH", f"the guest died during the test ({found[0].title})",
                      [s.to_dict() for s in found], found[0].excerpt)
    ev = judge(status=None, seconds=2.0, diagnosis=crash, seen=None, tail="", data={})
    assert fold(ev) == ("CRASH", "CRASH: the guest died during the test (kernel panic: sysrq "
                                 "triggered crash)")
    hang = Diagnosis("HANG", "the program ran past --timeout 5 s")
    assert _folded(status=None, diagnosis=hang) == ("HANG", "HANG: the program ran past "
                                                            "--timeout 5 s")


def test_output_is_logged_whole_and_shown_printable(capsys: pytest.CaptureFixture[str]) -> None:
    log = io.BytesIO()
    out = Output(log)
    write = out.writer("stdout")
    # A character cut across two chunks, and an escape sequence the terminal must not get.
    write("caf\u00e9 \x1b]0;title\x07\n".encode()[:4])
    write("caf\u00e9 \x1b]0;title\x07\n".encode()[4:])
    out.writer("stderr")(b"".join(f"line {i}\n".encode() for i in range(100)))
    shown = capsys.readouterr()
    assert shown.out == "caf\u00e9 \\x1b]0;title\\x07\n"
    assert log.getvalue().startswith("caf\u00e9 \x1b]0;title\x07\n".encode())
    assert out.last_lines().splitlines()[-1] == "line 99" and len(
        out.last_lines().splitlines()) == 40


def test_output_past_the_cap_is_cut_and_its_tail_kept(capsys: pytest.CaptureFixture[str]) -> None:
    log = io.BytesIO()
    out = Output(log, cap=1000)
    write = out.writer("stdout")
    for i in range(200):  # 200 lines of 11 bytes: 2200 in all
        write(f"line {i:05d}\n".encode())
    out.close()
    text = log.getvalue().decode()
    head, marker, tail = text.partition("\n[kernel-lab: 1200 bytes of output cut here; the "
                                        "last 2200 bytes follow]\n")
    assert marker, text[-300:]
    assert len(head) == 1000 and head.startswith("line 00000\n")
    assert tail.endswith("line 00199\n")
    shown = capsys.readouterr().out
    assert "passed 1000 bytes" in shown and "line 00199" not in shown
    assert out.last_lines().splitlines()[-1] == "line 00199"
