"""sys.kmsg_*: the kernel log, written and read in test windows (/dev/kmsg)."""

from __future__ import annotations

import errno
import os
import threading
import time
from typing import Any


def kmsg_write(text: str, level: int = 6) -> None:
    # A fresh open per call: /dev/kmsg rate-limits writes per open file.
    # The trailing newline matters: without it printk leaves the record open
    # for continuation and readers of /dev/kmsg do not see it until the next
    # message arrives (observed on 6.18).
    if not text.endswith("\n"):
        text += "\n"
    fd = os.open("/dev/kmsg", os.O_WRONLY)
    try:
        os.write(fd, f"<{int(level)}>{text}".encode())
    finally:
        os.close(fd)


def _parse_record(raw: bytes) -> dict[str, Any] | None:
    text = raw.decode("utf-8", errors="replace")
    head, sep, body = text.partition(";")
    if not sep:
        return None
    parts = head.split(",")
    if len(parts) < 3:
        return None
    # Continuation lines (" KEY=value", dictionary properties) are dropped.
    message = body.split("\n", 1)[0]
    pri, seq, ts = int(parts[0]), int(parts[1]), int(parts[2])
    return {"seq": seq, "level": pri & 7, "ts_us": ts, "text": message}


def _read_all(fd: int) -> list[dict[str, Any]]:
    """Every record ``fd`` has not read yet (it reads /dev/kmsg without blocking)."""
    out: list[dict[str, Any]] = []
    while True:
        try:
            raw = os.read(fd, 16384)  # one record per read; max is ~8 KiB
        except BlockingIOError:
            break
        except OSError as exc:
            # EPIPE: records we were about to read were overwritten; the
            # next read continues at the oldest record still present.
            if exc.errno == errno.EPIPE:
                continue
            raise
        if not raw:
            break
        rec = _parse_record(raw)
        if rec is not None:
            out.append(rec)
    return out


def _kmsg_records() -> list[dict[str, Any]]:
    """The whole kernel log, from a fresh open."""
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    try:
        return _read_all(fd)
    finally:
        os.close(fd)


class _KmsgTail:
    """The kernel log since the last test window opened, read incrementally.

    Every test opens and closes a window (kmsg_mark, kmsg_close); reading and parsing the
    whole log each time cost a tenth of a second per read under TCG, more as the log grew
    through a suite.  One open file keeps its place: each call reads only what is new, and
    the records from the window's start on are kept.  A window older than what is kept, a
    call from a forked child (which would move the shared file position) or from another
    thread (an op run by thread.* or creds.call, which must open /dev/kmsg with its own
    credentials) reads the whole log from a fresh open, as before.
    """

    def __init__(self) -> None:
        self.fd: int | None = None
        self.owner: tuple[int, int] = (0, 0)  # (pid, thread) that opened ``fd``
        self.floor = -1  # records with seq > floor are all in ``kept``
        self.kept: list[dict[str, Any]] = []

    def _mine(self) -> bool:
        """Whether this call may use the shared file (the agent's main thread)."""
        if self.fd is None and threading.current_thread() is threading.main_thread():
            self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            self.owner, self.floor, self.kept = (os.getpid(), threading.get_ident()), -1, []
        return self.fd is not None and self.owner == (os.getpid(), threading.get_ident())

    def since(self, after_seq: int) -> list[dict[str, Any]]:
        """Every record with seq > ``after_seq``."""
        if not self._mine():
            return [r for r in _kmsg_records() if r["seq"] > after_seq]
        assert self.fd is not None
        new = _read_all(self.fd)
        expected = self.kept[-1]["seq"] + 1 if self.kept else self.floor + 1
        if new and self.floor >= 0 and new[0]["seq"] != expected:
            # The ring overwrote records between two reads: what is kept has a hole.
            self.floor, self.kept = new[0]["seq"] - 1, []
        self.kept += new
        if after_seq < self.floor:
            return [r for r in _kmsg_records() if r["seq"] > after_seq]
        return [r for r in self.kept if r["seq"] > after_seq]

    def last_seq(self) -> int:
        records = self.since(self.floor if self._mine() else -1)
        return int(records[-1]["seq"]) if records else self.floor

    def keep_from(self, seq: int) -> None:
        """Forget records up to ``seq`` (a new window opened after it)."""
        if self._mine() and seq > self.floor:
            self.kept = [r for r in self.kept if r["seq"] > seq]
            self.floor = seq


_TAIL = _KmsgTail()


def kmsg_read(after_seq: int = -1, settle_ms: int = 0,
              max_wait_ms: int = 0) -> list[dict[str, Any]]:
    """Records after ``after_seq``; with ``settle_ms``, first wait until the log has been
    quiet that long (at most ``max_wait_ms``), so that deferred work a test started
    (workqueue items, RCU callbacks, completions) has printed what it will print.
    """
    records = _TAIL.since(after_seq)
    if settle_ms <= 0:
        return records
    deadline = time.monotonic() + max(max_wait_ms, settle_ms) / 1000
    while True:
        last = records[-1]["seq"] if records else after_seq
        time.sleep(settle_ms / 1000)
        records = _TAIL.since(after_seq)
        if (records[-1]["seq"] if records else after_seq) == last:
            return records
        if time.monotonic() > deadline:
            return records


def _taint() -> int:
    with open("/proc/sys/kernel/tainted", encoding="ascii") as f:
        return int(f.read())


def kmsg_mark(text: str, since_seq: int | None = None) -> dict[str, Any]:
    """Open a test's window in one round trip: the last record's seq before the marker,
    the marker's own timestamp, and the taint mask.

    With ``since_seq`` (where the previous window closed), also every record after it
    up to the marker: what the kernel printed between the two windows (the previous
    test's deferred work), so that no record falls between windows.
    """
    before = kmsg_seq()
    gap = [r for r in _TAIL.since(since_seq) if r["seq"] <= before] \
        if since_seq is not None else []
    taint = _taint()  # read with the gap: whatever tainted the kernel by now is in it
    _TAIL.keep_from(before)  # the window opens here: what came before is not asked for again
    kmsg_write(text)
    mine = [r for r in _TAIL.since(before) if r["text"] == text.rstrip("\n")]
    return {"seq": before, "ts_us": int(mine[0]["ts_us"]) if mine else 0, "taint": taint,
            "records": gap}


def kmsg_close(after_seq: int, text: str, settle_ms: int = 0,
               max_wait_ms: int = 0) -> dict[str, Any]:
    """Close a test's window: every record since it opened (once the log has been quiet
    ``settle_ms``), then the end marker, the taint mask, and ``seq``: the last record
    read, where the next window's gap starts (the end marker comes after it)."""
    records = kmsg_read(after_seq, settle_ms=settle_ms, max_wait_ms=max_wait_ms)
    taint = _taint()
    kmsg_write(text)
    return {"records": records, "taint": taint,
            "seq": int(records[-1]["seq"]) if records else after_seq}


def kmsg_seq() -> int:
    return _TAIL.last_seq()
