"""`lab shell` on real guests: a command's output and status, a splat seen as it happens,
a panic, the interactive relay on a real pseudo-terminal, and Ctrl-C.

Each test is one `lab shell` (one boot of debian:7.2 from the shared cache).
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from labrun import REPO, qemus_of

from lab.paths import cache_root

pytestmark = [pytest.mark.vm]

# A WARN's first line, written into the kernel log by root (Debian's kernel has no LKDTM
# to raise a real one safely); the splat parser reads it as it reads the kernel's own.
WARN = "WARNING: CPU: 0 PID: 1 at fs/aio.c:1234 io_destroy+0x10/0x20"


def shell_cmd(tmp_path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "lab.cli", "shell", "--kernel", "debian:7.2",
            "--results", str(tmp_path / "results"), "--cache", str(cache_root()), *args]


def run_dir_of(tmp_path: Path) -> Path:
    [run_dir] = sorted((tmp_path / "results").glob("*"))
    return run_dir


def test_a_command_prints_the_release_and_exits_0(tmp_path: Path) -> None:
    res = subprocess.run(shell_cmd(tmp_path, "--", "uname", "-r"), capture_output=True,
                         text=True, timeout=600, cwd=REPO, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr[-3000:]
    assert re.fullmatch(r"7\.2\.\d+\S*\n", res.stdout), res.stdout
    assert "kernel-lab: no kernel splat" in res.stderr
    run_dir = run_dir_of(tmp_path)
    assert list(run_dir.glob("console-*.log")) and (run_dir / "timeline.jsonl").is_file()
    assert not qemus_of(run_dir)


def test_false_exits_1(tmp_path: Path) -> None:
    res = subprocess.run(shell_cmd(tmp_path, "--", "false"), capture_output=True, text=True,
                         timeout=600, cwd=REPO, stdin=subprocess.DEVNULL)
    assert res.returncode == 1, res.stderr[-3000:]
    assert res.stdout == ""


def _read_until(fd: int, pattern: bytes, seen: bytearray, timeout: float,
                start: int = 0) -> int:
    """Read the terminal into ``seen`` until ``pattern`` is in it past ``start``; where."""
    deadline = time.monotonic() + timeout
    while pattern not in seen[start:]:
        left = deadline - time.monotonic()
        assert left > 0, f"no {pattern!r} in {bytes(seen[-3000:])!r}"
        if select.select([fd], [], [], left)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            assert chunk, f"the terminal closed before {pattern!r}: {bytes(seen[-3000:])!r}"
            seen += chunk
    return seen.index(pattern, start)


def test_interactive_shell_on_a_terminal_with_a_splat(tmp_path: Path) -> None:
    """`lab shell` on a real pty: typed commands run as root, a splat is said as it happens
    and listed at the end, the shell's `exit 7` is lab shell's status."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: `lab shell` with the pty as its terminal, wide enough that
        os.chdir(REPO)  # the typed line is echoed on one line
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        argv = shell_cmd(tmp_path)
        os.execv(argv[0], argv)
    seen = bytearray()
    try:
        begun = _read_until(fd, b"a root shell in the guest", seen, 600)
        _read_until(fd, b"# ", seen, 60, start=begun)  # root's prompt
        os.write(fd, f"echo '<4>{WARN}' > /dev/kmsg; id -u; uname -r\r".encode())
        # The splat's line comes from another thread, between the command's lines or
        # after them: both are waited for before the shell is told to exit.
        _read_until(fd, b"kernel-lab: kernel splat: WARNING in io_destroy\r\n", seen, 60)
        release = _read_until(fd, b"\r\n7.2.", seen, 60)
        _read_until(fd, b"# ", seen, 60, start=release)  # the prompt again
        os.write(fd, b"exit 7\r")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if not select.select([fd], [], [], 1)[0]:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        _, wait_status = os.waitpid(pid, 0)
        pid = 0
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    text = seen.decode(errors="replace")
    assert os.waitstatus_to_exitcode(wait_status) == 7, text[-3000:]
    lines = text.split("\r\n")
    typed = next(n for n, line in enumerate(lines) if line.endswith("id -u; uname -r"))
    output = [line for line in lines[typed + 1:] if not line.startswith("kernel-lab: ")]
    assert output[0] == "0" and re.fullmatch(r"7\.2\.\d+\S*", output[1]), text[-3000:]
    assert "lastlog" not in text  # the guest's login is quiet (guest/boot.sh)
    run_dir = run_dir_of(tmp_path)
    # The end list: the title and the file its excerpt is in.
    listed = f"kernel-lab:   WARNING in io_destroy  ({run_dir / 'splat-1.txt'})"
    assert listed in text, text[-3000:]
    assert WARN in (run_dir / "splat-1.txt").read_text()
    assert WARN in (run_dir / "kmsg.log").read_text()
    assert not qemus_of(run_dir)


def test_ctrl_c_during_the_command_stops_the_guest(tmp_path: Path) -> None:
    """Our stdin is the command's (a pipe here); Ctrl-C in the command: 130, no QEMU."""
    child = subprocess.Popen(shell_cmd(tmp_path, "--", "sh", "-c",
                                       'read line; echo "got $line"; sleep 600'),
                             cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, start_new_session=True)
    try:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(b"it\n")
        child.stdin.flush()
        assert child.stdout.readline() == b"got it\n"
        os.killpg(child.pid, signal.SIGINT)
        _, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert child.returncode == 130, err[-3000:]
    run_dir = run_dir_of(tmp_path)
    assert not qemus_of(run_dir)
    assert not [p for p in run_dir.iterdir() if p.is_dir()]  # the VM's directory removed


def test_a_command_that_panics_the_kernel(tmp_path: Path) -> None:
    """The guest dies with the command: no status (255, as ssh), and the panic, which the
    agent could not read, comes from the console log."""
    res = subprocess.run(shell_cmd(tmp_path, "--", "sh", "-c", "echo c > /proc/sysrq-trigger"),
                         capture_output=True, text=True, timeout=600, cwd=REPO,
                         stdin=subprocess.DEVNULL)
    assert res.returncode == 255, res.stderr[-3000:]
    assert "the command ended without an exit status: the guest died" in res.stderr
    run_dir = run_dir_of(tmp_path)
    assert re.search(r"^kernel-lab:   kernel panic: sysrq triggered crash  \(" +
                     re.escape(str(run_dir / "splat-1.txt")) + r"\)$", res.stderr, re.M), \
        res.stderr[-3000:]
    assert "sysrq" in (run_dir / "splat-1.txt").read_text().lower()
    assert not qemus_of(run_dir)
