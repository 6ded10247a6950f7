"""The one place the lab starts host processes.

``run()`` runs a command to completion; ``spawn()`` starts a long-lived one
(QEMU through virtme-ng).  Both log the argv first, tee all output to a log
file (``spawn``'s may be capped: its head, a line saying what was cut, its
tail), run the child in its own process group and kill that whole group on
timeout, error or Ctrl-C.  ``converse()`` starts a child spoken to on its stdin
and stdout (the agent on the host's kernel), its stderr in a log file.
Argument lists only, never shell strings.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from lab.errors import InfraError
from lab.paths import REPO

log = logging.getLogger("lab.proc")

TAIL_LINES = 20
# A line read at once (longer ones come in pieces): a child printing one endless line
# costs this much memory, not the line.
LINE_MAX = 64 << 10


class ProcessError(InfraError):
    """A command failed: carries its argv, exit code and the tail of its output."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        returncode: int | None,
        tail: str,
        phase: str,
        log_path: Path | None,
        timed_out: bool = False,
    ) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.tail = tail
        self.timed_out = timed_out
        what = "timed out" if timed_out else f"exited with {returncode}"
        last = tail.strip().splitlines()[-1:] or [""]
        super().__init__(
            f"`{shlex.join(argv)}` {what}: {last[0]}".rstrip(": "), phase=phase, log=log_path
        )


def _kill_group(proc: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _popen(
    argv: Sequence[str], *, cwd: Path | None, env: Mapping[str, str] | None, stdin: int | None,
    stderr: int | IO[bytes] = subprocess.STDOUT,
) -> subprocess.Popen[bytes]:
    log.debug("+ %s", shlex.join(argv))
    full_env = None if env is None else {**os.environ, **env}
    try:
        return subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=full_env,
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise ProcessError(
            argv, returncode=None, tail=str(exc), phase="exec", log_path=None
        ) from None


@dataclass(frozen=True)
class Flood:
    """A child's output passed its log's cap: when (``time.monotonic()``) and the cap."""

    at: float
    head_bytes: int
    tail_bytes: int
    log_path: Path | None


class _Tee(threading.Thread):
    """Copies a child's output to a log file (and keeps the last lines).

    With ``cap`` (head_bytes, tail_bytes) the file gets at most the first head_bytes of
    whole lines; past them nothing more is written (``flooded`` says since when), the
    last tail_bytes are kept in memory, and at the end of the output the file gets one
    line saying what was cut, then those bytes.  A line longer than LINE_MAX is read in
    pieces, so an endless line costs no more memory than a short one.  ``on_line`` sees
    every piece, cut or not.
    """

    def __init__(self, src: IO[bytes], log_file: IO[bytes] | None,
                 on_line: Callable[[bytes], None] | None = None, *,
                 cap: tuple[int, int] | None = None, log_path: Path | None = None) -> None:
        super().__init__(daemon=True)
        self.src = src
        self.log_file = log_file
        self.on_line = on_line
        self.tail: deque[bytes] = deque(maxlen=TAIL_LINES)
        self.chunks: list[bytes] | None = None
        self.cap = cap
        self.log_path = log_path
        self.written = 0  # bytes this tee wrote to the log (its head)
        self.flooded: Flood | None = None
        self._over: deque[bytes] = deque()  # the last pieces past the head
        self._over_bytes = 0  # their size
        self._cut_bytes = 0  # bytes past the head no longer kept
        self._cut_lines = 0  # newlines among them
        self._cut_midline = False  # the cut ends inside a line that goes on in the tail
        self._at_line_start = True  # the head ends with a whole line

    def keep_all(self) -> None:
        self.chunks = []

    def run(self) -> None:
        for line in iter(lambda: self.src.readline(LINE_MAX), b""):
            if self.log_file is not None:
                self._write(line)
            self.tail.append(line)
            if self.chunks is not None:
                self.chunks.append(line)
            if self.on_line is not None:
                self.on_line(line)
        if self.log_file is not None and self.flooded is not None:
            kept = self._kept()
            with contextlib.suppress(ValueError, OSError):  # closed by a stop that gave up
                self.log_file.write(self.cut_marker(len(kept)) + kept)
                self.log_file.flush()

    def _write(self, line: bytes) -> None:
        assert self.log_file is not None
        if self.cap is None or (self.flooded is None and
                                self.written + len(line) <= self.cap[0]):
            self.log_file.write(line)
            self.log_file.flush()
            self.written += len(line)
            self._at_line_start = line.endswith(b"\n")
            return
        if self.flooded is None:
            self.flooded = Flood(time.monotonic(), *self.cap, log_path=self.log_path)
            log.warning("%s passed its cap of %d bytes: only its last %d bytes are kept "
                        "from here", self.log_path, self.cap[0], self.cap[1])
        self._over.append(line)
        self._over_bytes += len(line)
        # Drop whole pieces while what stays still covers the tail (all of them for a
        # tail of 0: the loop must stop at an empty deque, or this thread dies, the pipe
        # fills and the child, QEMU's console, blocks: a hung guest blamed on its kernel).
        while self._over and self._over_bytes - len(self._over[0]) >= self.cap[1]:
            gone = self._over.popleft()
            self._over_bytes -= len(gone)
            self._cut(gone)

    def _cut(self, piece: bytes) -> None:
        self._cut_bytes += len(piece)
        self._cut_lines += piece.count(b"\n")
        self._cut_midline = not piece.endswith(b"\n")

    def _kept(self) -> bytes:
        """The last tail_bytes past the head (the first piece cut to fit); once, at the end."""
        assert self.cap is not None
        excess = self._over_bytes - self.cap[1]
        if excess > 0:
            first = self._over.popleft()
            self._cut(first[:excess])
            self._over.appendleft(first[excess:])
            self._over_bytes -= excess
        return b"".join(self._over)

    def cut_marker(self, kept: int) -> bytes:
        """The line that says what of the output the log does not hold (after ``_kept``)."""
        lines = self._cut_lines + self._cut_midline
        return (f"{'' if self._at_line_start else chr(10)}[kernel-lab: log cut here: "
                f"{self._cut_bytes} bytes in {lines} lines cut after the first "
                f"{self.written} bytes; the last {kept} bytes follow]\n").encode()

    def tail_text(self) -> str:
        return b"".join(self.tail).decode("utf-8", "replace")


def run(
    argv: Sequence[str],
    *,
    phase: str,
    log_path: Path | None = None,
    timeout: float = 600.0,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    stdin_path: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` to completion; its combined output is returned and teed to ``log_path``.
    ``stdin_path``: a file it reads as its standard input (else none)."""
    log_file = _open_log(log_path, argv)
    if stdin_path is None:
        proc = _popen(argv, cwd=cwd, env=env, stdin=None)
    else:
        with open(stdin_path, "rb") as given:
            proc = _popen(argv, cwd=cwd, env=env, stdin=given.fileno())
    assert proc.stdout is not None
    tee = _Tee(proc.stdout, log_file)
    tee.keep_all()
    tee.start()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        tee.join(5)
        raise ProcessError(
            argv, returncode=None, tail=tee.tail_text(), phase=phase, log_path=log_path,
            timed_out=True,
        ) from None
    except BaseException:
        _kill_group(proc)
        raise
    finally:
        tee.join(5)
        if log_file is not None:
            log_file.close()
    out = b"".join(tee.chunks or []).decode("utf-8", "replace")
    if check and proc.returncode != 0:
        raise ProcessError(
            argv, returncode=proc.returncode, tail=tee.tail_text(), phase=phase, log_path=log_path
        )
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, "")


def _open_log(log_path: Path | None, argv: Sequence[str]) -> IO[bytes] | None:
    if log_path is None:
        return None
    log_path.parent.mkdir(parents=True, exist_ok=True)
    f = open(log_path, "ab")  # noqa: SIM115 - closed by the caller, it outlives this function
    f.write(f"+ {shlex.join(argv)}\n".encode())
    f.flush()
    return f


class Spawned:
    """A long-lived child (its own process group) whose output is teed to a log file."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: Path,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        on_line: Callable[[bytes], None] | None = None,
        log_cap: tuple[int, int] | None = None,
    ) -> None:
        self._log = _open_log(log_path, argv)
        self.proc = _popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        self._tee = _Tee(self.proc.stdout, self._log, on_line, cap=log_cap, log_path=log_path)
        self._tee.start()
        self._reaper, self._reaper_pipe = _start_reaper(self.proc.pid)

    @property
    def flooded(self) -> Flood | None:
        """When the output passed the log's cap (None: it has not)."""
        return self._tee.flooded

    def poll(self) -> int | None:
        return self.proc.poll()

    def stop(self, grace: float = 3.0) -> int | None:
        """End the whole process group (idempotent) and close the log."""
        _kill_group(self.proc, grace)
        if self._reaper_pipe is not None:
            os.close(self._reaper_pipe)  # releases the reaper: the group is gone already
            self._reaper_pipe = None
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._reaper.wait(5)  # no zombie per VM in a long run
        self._tee.join(5)
        if self._log is not None and not self._log.closed:
            self._log.close()
        return self.proc.returncode


def _start_reaper(pgid: int) -> tuple[subprocess.Popen[bytes], int | None]:
    """Start lab.reaper guarding ``pgid``; returns it and the pipe end that releases it."""
    read_end, write_end = os.pipe()
    try:
        reaper = subprocess.Popen(
            [sys.executable, "-m", "lab.reaper", str(pgid)],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            cwd=REPO,
        )
    finally:
        os.close(read_end)
    return reaper, write_end


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    on_line: Callable[[bytes], None] | None = None,
    log_cap: tuple[int, int] | None = None,
) -> Spawned:
    """Start ``argv`` in the background; the caller must ``stop()`` it (see lab.vm).

    ``on_line`` sees each line of output as it arrives (the boot timeline; a line longer
    than LINE_MAX in pieces).  ``log_cap`` (head_bytes, tail_bytes) bounds what the log
    gets: its first head_bytes, a line saying what was cut, its last tail_bytes (written
    as the output ends: ``stop()``); ``flooded`` says when the output passed the head.
    """
    return Spawned(argv, log_path=log_path, cwd=cwd, env=env, on_line=on_line,
                   log_cap=log_cap)


class Piped:
    """A child in its own process group spoken to on its stdin and stdout (the caller reads
    ``stdout``), its stderr appended to a log file."""

    def __init__(self, argv: Sequence[str], *, log_path: Path, cwd: Path | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        log_file = _open_log(log_path, argv)
        assert log_file is not None
        self._log = log_file
        self.proc = _popen(argv, cwd=cwd, env=env, stdin=subprocess.PIPE, stderr=log_file)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout

    def stop(self, grace: float = 3.0) -> int | None:
        """Close its stdin (EOF: the agent's own way out), then end the group if it lingers
        past ``grace``; the exit status (idempotent)."""
        with contextlib.suppress(OSError):
            self.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(grace)
        _kill_group(self.proc)
        self.stdout.close()
        self._log.close()
        return self.proc.returncode


def converse(argv: Sequence[str], *, log_path: Path, cwd: Path | None = None,
             env: Mapping[str, str] | None = None) -> Piped:
    """Start ``argv`` to be spoken to on its stdin and stdout; the caller must ``stop()`` it."""
    return Piped(argv, log_path=log_path, cwd=cwd, env=env)
