"""`lab shell` without a guest: its refusals, the kernel-log watch over scripted kernel-log
reads, the escaping of a command's output to a terminal, and the terminal's mode restored.

The real guest is tests/test_shell_real.py's.
"""

from __future__ import annotations

import io
import os
import select
import subprocess
import sys
import termios
from pathlib import Path
from typing import Any

import pytest

from lab.inside.shell import KernelWatch, Notices, Sink
from lab.vm import pty

REPO = Path(__file__).resolve().parent.parent


def lab_shell(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab.cli", "shell", "--cache",
                           str(tmp_path / "cache"), "--results", str(tmp_path / "results"),
                           *args], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          stdin=subprocess.DEVNULL,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
                               "HOME": str(tmp_path)})


def _one_line_exit_2(res: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lab: error: "), res.stderr
    for needle in needles:
        assert needle in lines[0]


def test_two_cells_are_refused(tmp_path: Path) -> None:
    res = lab_shell("--kernel", "debian:7.2", "--kernel", "debian:6.1", "--", "true",
                    tmp_path=tmp_path)
    _one_line_exit_2(res, "boots one guest", "debian:7.2, debian:6.1")
    assert not (tmp_path / "results").exists()


def test_no_command_and_no_terminal_is_refused(tmp_path: Path) -> None:
    res = lab_shell(tmp_path=tmp_path)
    _one_line_exit_2(res, "needs a terminal", "lab shell -- uname -r")
    assert not (tmp_path / "results").exists()


def test_a_bad_guest_option_is_refused(tmp_path: Path) -> None:
    res = lab_shell("--memory", "lots", "--", "true", tmp_path=tmp_path)
    _one_line_exit_2(res, "--memory")


def test_a_dump_is_refused_the_shell_writes_none(tmp_path: Path) -> None:
    res = lab_shell("--dump", "elf", "--", "true", tmp_path=tmp_path)
    _one_line_exit_2(res, "--dump elf", "lab exec or lab run")
    assert not (tmp_path / "results").exists()


class ScriptedKmsg:
    """The agent's kernel-log ops over a list of records that grows between reads."""

    default_timeout = 5.0

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = [{"seq": 0, "ts_us": 1, "text": "booted"}]

    def add(self, *texts: str) -> None:
        for text in texts:
            seq = self.records[-1]["seq"] + 1
            self.records.append({"seq": seq, "ts_us": seq * 1000, "text": text})

    def call(self, op: str, /, **args: Any) -> Any:
        if op == "sys.kmsg_mark":
            return {"seq": self.records[-1]["seq"], "ts_us": 0, "taint": 0, "records": []}
        assert op == "sys.kmsg_read", op
        return [r for r in self.records if r["seq"] > args["after_seq"]]


WARN = "WARNING: CPU: 0 PID: 1 at fs/aio.c:1234 io_destroy+0x10/0x20"


def test_the_watch_says_each_splat_once_as_it_appears() -> None:
    kmsg = ScriptedKmsg()
    said: list[str] = []
    watch = KernelWatch(kmsg, say=said.append, interval=3600)  # type: ignore[arg-type]
    watch.start()
    watch.poll()
    assert said == []
    kmsg.add(WARN)
    watch.poll()
    assert said == ["kernel splat: WARNING in io_destroy"]
    # The rest of the same report, read later: not a second splat; the excerpt grows.
    kmsg.add("Modules linked in: nvme", "CPU: 0 UID: 0 PID: 1 Comm: sh Not tainted 7.2.0 #1")
    watch.poll()
    assert said == ["kernel splat: WARNING in io_destroy"]
    assert "Modules linked in" in watch.splats[0].excerpt
    # The same bug again is not a new line (one report per bug, as parse() gives them);
    # another is.
    kmsg.add(WARN, WARN.replace("io_destroy", "io_submit"))
    watch.poll()
    assert said == ["kernel splat: WARNING in io_destroy", "kernel splat: WARNING in io_submit"]
    assert [s.title for s in watch.splats] == ["WARNING in io_destroy", "WARNING in io_submit"]
    watch.finish(alive=True)


def test_notices_end_in_crlf_in_raw_mode() -> None:
    out = io.StringIO()
    say = Notices(out)
    say("one")
    say.raw = True
    say("two")
    assert out.getvalue() == "kernel-lab: one\nkernel-lab: two\r\n"


def _drain(fd: int) -> bytes:
    """What the terminal has to read now (it may come in more than one read)."""
    got = b""
    while select.select([fd], [], [], 0.5)[0]:
        got += os.read(fd, 100)
    return got


def test_output_to_a_terminal_is_escaped_unless_raw() -> None:
    master, slave = os.openpty()
    try:
        with open(slave, "wb", buffering=0, closefd=False) as tty_out:
            escaped = Sink(tty_out, raw=False)  # type: ignore[arg-type]
            escaped.write("é\x1b]0;x".encode()[:2])  # a character cut between two reads
            escaped.write("é\x1b]0;x\x07\n".encode()[2:], final=True)
            assert _drain(master) == b"\xc3\xa9\\x1b]0;x\\x07\r\n"  # the tty's onlcr
            Sink(tty_out, raw=True).write(b"\x1b[1m\n")
            assert _drain(master) == b"\x1b[1m\r\n"
        piped = io.BytesIO()
        Sink(piped, raw=False).write(b"\x1b[1m\n")  # type: ignore[arg-type]
        assert piped.getvalue() == b"\x1b[1m\n"
    finally:
        os.close(master)
        os.close(slave)


def test_raw_mode_is_restored_when_the_relay_fails() -> None:
    master, slave = os.openpty()
    try:
        before = termios.tcgetattr(slave)
        with pytest.raises(RuntimeError), pty.raw_mode(slave):
            assert termios.tcgetattr(slave)[3] & termios.ECHO == 0
            raise RuntimeError("the guest went away")
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)
