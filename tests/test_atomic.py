"""lab.atomic's writers that keep a source copy (write only what differs) and its lock."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from lab import atomic


def test_put_file_writes_only_what_differs(tmp_path: Path) -> None:
    f = tmp_path / "a" / "b.c"
    assert atomic.put_file(f, b"int x;\n", executable=False)
    assert f.read_bytes() == b"int x;\n" and f.stat().st_mode & 0o777 == 0o644
    os.utime(f, ns=(1, 1))
    assert not atomic.put_file(f, b"int x;\n", executable=False)
    assert f.stat().st_mtime_ns == 1  # unchanged: make sees nothing to rebuild
    assert atomic.put_file(f, b"int x;\n", executable=True)  # the mode alone differs
    assert f.stat().st_mode & 0o777 == 0o755
    assert atomic.put_file(f, b"int y;\n", executable=True) and f.read_bytes() == b"int y;\n"
    assert sorted(p.name for p in f.parent.iterdir()) == ["b.c"]  # no temporary left


def test_put_file_and_put_symlink_replace_what_is_in_the_way(tmp_path: Path) -> None:
    link, target = tmp_path / "link", tmp_path / "target"
    target.write_text("the link's target: never written through the link\n")
    link.symlink_to(target)
    assert atomic.put_file(link, b"a file now\n", executable=False)
    assert not link.is_symlink() and link.read_bytes() == b"a file now\n"
    assert target.read_text().startswith("the link's target")
    assert atomic.put_symlink(link, "target") and os.readlink(link) == "target"
    assert not atomic.put_symlink(link, "target")
    directory = tmp_path / "dir"
    (directory / "sub").mkdir(parents=True)
    assert atomic.put_symlink(directory, "target") and directory.is_symlink()
    (tmp_path / "was-a-dir").mkdir()
    assert atomic.put_file(tmp_path / "was-a-dir", b"x", executable=False)


def test_locked_makes_another_process_wait(tmp_path: Path) -> None:
    lock = tmp_path / "deep" / "tree.lock"
    waiter = ("import fcntl, sys, time\n"
              "f = open(sys.argv[1], 'w'); t = time.monotonic()\n"
              "fcntl.flock(f, fcntl.LOCK_EX); print(time.monotonic() - t)\n")
    with atomic.locked(lock):
        child = subprocess.Popen([sys.executable, "-c", waiter, str(lock)],
                                 stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        assert child.poll() is None  # still waiting for the lock
    out, _ = child.communicate(timeout=30)
    assert float(out) >= 0.4
