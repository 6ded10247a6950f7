"""The process helper: output teed, errors carry argv/status/tail, groups die."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lab import proc


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purposes.
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.split(") ", 1)[1][0] != "Z"


def test_run_returns_output_and_logs_argv(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    out = proc.run(["sh", "-c", "echo one; echo two >&2"], phase="t", log_path=log)
    assert out.returncode == 0
    assert "one" in out.stdout and "two" in out.stdout
    text = log.read_text()
    assert text.startswith("+ sh -c 'echo one; echo two >&2'\n")
    assert "two" in text


def test_run_failure_carries_argv_status_and_tail(tmp_path: Path) -> None:
    with pytest.raises(proc.ProcessError) as info:
        proc.run(["sh", "-c", "echo boom-line; exit 7"], phase="build", log_path=tmp_path / "l")
    err = info.value
    assert err.returncode == 7 and err.argv[0] == "sh"
    assert "boom-line" in err.tail
    assert str(err).startswith("build: `sh -c")
    assert str(tmp_path / "l") in str(err)


def test_run_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    started = time.monotonic()
    with pytest.raises(proc.ProcessError) as info:
        proc.run(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"], phase="t", timeout=1)
    assert info.value.timed_out
    assert time.monotonic() - started < 10
    grandchild = int(pidfile.read_text())
    time.sleep(0.2)
    assert not _alive(grandchild)


def test_missing_binary_is_a_process_error() -> None:
    with pytest.raises(proc.ProcessError):
        proc.run(["/nonexistent/tool"], phase="t")


def test_spawn_stop_ends_group_and_closes_log(tmp_path: Path) -> None:
    log = tmp_path / "spawn.log"
    child = proc.spawn(["sh", "-c", "echo started; sleep 60"], log_path=log)
    deadline = time.monotonic() + 5
    while "started" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert child.poll() is None
    child.stop()
    assert child.poll() is not None
    assert "started" in log.read_text()


def test_group_dies_when_the_lab_is_killed(tmp_path: Path) -> None:
    """SIGKILL the process that spawned a group: the reaper still ends the group."""
    pidfile = tmp_path / "sleep.pid"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
        from pathlib import Path
        from lab import proc
        p = proc.spawn(["sh", "-c", "sleep 120 & echo $! > {pidfile}; wait"],
                       log_path=Path({str(tmp_path / 'l.log')!r}))
        print("ready", flush=True)
        time.sleep(120)
    """)
    lab = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert lab.stdout is not None
    assert lab.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 5
    # The shell creates the file before it writes the pid: wait for the whole line.
    while not (pidfile.exists() and pidfile.read_text().endswith("\n")) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    sleeper = int(pidfile.read_text())
    assert _alive(sleeper)
    lab.send_signal(signal.SIGKILL)
    lab.wait()
    deadline = time.monotonic() + 10
    while _alive(sleeper) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(sleeper)


def test_converse_speaks_on_stdin_and_stdout_and_logs_stderr(tmp_path: Path) -> None:
    log_path = tmp_path / "child.log"
    child = proc.converse(["sh", "-c", "echo oops >&2; read line; echo \"got $line\""],
                          log_path=log_path)
    child.stdin.write(b"hello\n")
    child.stdin.flush()
    assert child.stdout.readline() == b"got hello\n"
    assert child.stop() == 0
    assert log_path.read_text().splitlines() == ["+ sh -c 'echo oops >&2; read line; "
                                                 "echo \"got $line\"'", "oops"]


def test_converse_ends_a_child_that_ignores_eof(tmp_path: Path) -> None:
    child = proc.converse(["sleep", "60"], log_path=tmp_path / "child.log")
    assert child.stop(grace=0.2) == -signal.SIGTERM
