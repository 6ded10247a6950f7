"""A spawned child's log is capped: its head, a line saying what was cut, its tail.

Real children that flood (a Python script), with the cap lowered to about a MiB.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lab import proc
from lab.errors import UserError
from lab.vm.vmconfig import CONSOLE_CAP, CONSOLE_CAP_ENV, VmConfig, console_cap

HEAD, TAIL = 1 << 20, 256 << 10
LINES = 1_400_000  # "line 00000000\n": 14 bytes each, 19.6 MB
FLOOD = (
    "import sys, time\n"
    "for start in range(0, {n}, 10000):\n"
    "    sys.stdout.write(''.join(f'line {{i:08d}}\\n' for i in range(start, start + 10000)))\n"
    "sys.stdout.flush()\n"
    "time.sleep({sleep})\n"  # like QEMU: it runs on until stopped
)
MARKER = re.compile(rb"\[kernel-lab: log cut here: (\d+) bytes in (\d+) lines cut after "
                    rb"the first (\d+) bytes; the last (\d+) bytes follow\]\n")


def expected_output(n: int) -> bytes:
    return "".join(f"line {i:08d}\n" for i in range(n)).encode()


def spawn(tmp_path: Path, code: str, seen: list[Any],
          cap: tuple[int, int] | None = (HEAD, TAIL)) -> tuple[proc.Spawned, Path]:
    log = tmp_path / "console.log"
    spawned: list[proc.Spawned] = []

    def on_line(line: bytes) -> None:
        seen.append(len(line))
        if spawned:  # what the tee holds past the head, as it runs
            seen.append(-spawned[0]._tee._over_bytes)

    script = tmp_path / "child.py"  # one argv line in the log
    script.write_text(code)
    child = proc.spawn([sys.executable, str(script)], log_path=log, on_line=on_line,
                       log_cap=cap)
    spawned.append(child)
    return child, log


def test_a_flood_keeps_the_head_and_the_tail_and_says_what_was_cut(tmp_path: Path) -> None:
    seen: list[int] = []
    child, log = spawn(tmp_path, FLOOD.format(n=LINES, sleep=60), seen)
    deadline = time.monotonic() + 60
    while sum(n for n in seen if n > 0) < LINES * 14 and time.monotonic() < deadline:
        time.sleep(0.05)
    # While the child runs on (until stop) the file holds the argv line and the head
    # only: a reader by byte offset sees it stop growing.
    before_stop = log.stat().st_size
    assert child.flooded is not None and child.flooded.head_bytes == HEAD
    child.stop()
    data = log.read_bytes()
    argv_line, _, rest = data.partition(b"\n")
    assert argv_line.startswith(b"+ ")
    m = MARKER.search(rest)
    assert m is not None, rest[-300:]
    cut, lines, head, kept = map(int, m.groups())
    out = expected_output(LINES)
    assert head <= HEAD and kept == TAIL
    assert rest[:m.start()] == out[:head]  # whole lines, up to the cap
    assert rest[m.end():] == out[-TAIL:]  # the real last bytes, after the marker
    assert cut == len(out) - head - TAIL
    gone = out[head:len(out) - TAIL]
    assert lines == gone.count(b"\n") + (not gone.endswith(b"\n"))
    assert before_stop == len(argv_line) + 1 + head
    assert data[before_stop:].startswith(b"[kernel-lab: log cut here")
    assert len(data) <= len(argv_line) + 1 + HEAD + 200 + TAIL
    # The boot timeline's callback saw every line, cut or not.
    lens = [n for n in seen if n > 0]
    assert len(lens) == LINES and sum(lens) == len(out)
    assert max(-n for n in seen if n <= 0) <= TAIL + 20  # one line over the tail at most


def test_an_endless_line_is_read_in_pieces_and_stays_bounded(tmp_path: Path) -> None:
    seen: list[int] = []
    code = "import sys\nfor _ in range(300):\n    sys.stdout.write('x' * 65536)\n"
    child, log = spawn(tmp_path, code, seen)
    child.proc.wait(60)
    child.stop()
    pieces = [n for n in seen if n > 0]
    assert sum(pieces) == 300 * 65536 and max(pieces) <= proc.LINE_MAX
    assert max(-n for n in seen if n <= 0) <= TAIL + proc.LINE_MAX
    data = log.read_bytes()
    m = MARKER.search(data)
    assert m is not None
    assert int(m.group(2)) == 1  # one line, cut in the middle
    assert data[m.end():] == b"x" * TAIL
    assert len(data) <= HEAD + TAIL + 400


def test_output_under_the_cap_is_written_whole_without_a_marker(tmp_path: Path) -> None:
    seen: list[int] = []
    child, log = spawn(tmp_path, FLOOD.format(n=20000, sleep=0), seen)
    child.proc.wait(60)
    child.stop()
    assert child.flooded is None
    assert log.read_bytes().partition(b"\n")[2] == expected_output(20000)


def test_a_log_without_a_cap_takes_everything(tmp_path: Path) -> None:
    seen: list[int] = []
    child, log = spawn(tmp_path, FLOOD.format(n=200000, sleep=0), seen, cap=None)
    child.proc.wait(60)
    child.stop()
    assert child.flooded is None
    assert log.read_bytes().partition(b"\n")[2] == expected_output(200000)


@pytest.mark.parametrize(("value", "cap"), [
    ("", CONSOLE_CAP), ("1048576", (1 << 20, 1 << 16)), ("1048576,4096", (1 << 20, 4096)),
    (" 262144 , 0 ", (256 << 10, 0)),
])
def test_the_console_cap_from_the_environment(value: str, cap: tuple[int, int]) -> None:
    assert console_cap({CONSOLE_CAP_ENV: value}) == cap


@pytest.mark.parametrize("value", ["0", "1M", "1,2,3", "-5", "1,x", "2000,0", "262143"])
def test_a_bad_console_cap_is_a_user_error(value: str) -> None:
    with pytest.raises(UserError, match=CONSOLE_CAP_ENV):
        console_cap({CONSOLE_CAP_ENV: value})


@pytest.mark.parametrize("cap", [(2000, 0), (1 << 20, -1), (1 << 20,), (1.5e6, 0)])
def test_a_vm_config_refuses_a_bad_console_cap(cap: Any) -> None:
    with pytest.raises(UserError, match="console_cap"):
        VmConfig(console_cap=cap)
    assert VmConfig(console_cap=(256 << 10, 0)).console_cap == (256 << 10, 0)


def test_a_tail_of_0_keeps_the_head_and_the_reader_survives(tmp_path: Path) -> None:
    # Everything past the head is dropped: the reader must go on reading (it died on an
    # empty deque once), or the child blocks on a full pipe and never ends.
    seen: list[int] = []
    child, log = spawn(tmp_path, FLOOD.format(n=LINES // 4, sleep=0), seen, cap=(2000, 0))
    try:
        assert child.proc.wait(30) == 0
    finally:
        child.stop()
    assert child._tee.is_alive() is False and child.flooded is not None
    out = expected_output(LINES // 4)
    assert sum(n for n in seen if n > 0) == len(out)  # the reader saw it all
    rest = log.read_bytes().partition(b"\n")[2]
    m = MARKER.search(rest)
    assert m is not None, rest[-300:]
    cut, _, head, kept = map(int, m.groups())
    assert kept == 0 and rest[m.end():] == b"" and rest[:m.start()] == out[:head]
    assert head <= 2000 and cut == len(out) - head


def test_lab_run_refuses_a_bad_console_cap_in_one_line(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "lab.cli", "run", "--kernel", "debian:7.2",
         "--results", str(tmp_path)], capture_output=True, text=True, timeout=120,
        env={**os.environ, CONSOLE_CAP_ENV: "lots"})
    assert res.returncode == 2, res.stderr
    assert CONSOLE_CAP_ENV in res.stderr and "Traceback" not in res.stderr
