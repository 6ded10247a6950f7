"""Write to a temporary, then rename into place: the lab's one way to publish a file or a directory.

A cache entry, a staged agent, an SSH key, a compiled benchmark or a run's
summary either exists whole (published by one ``rename``) or not at all.  Work
in progress lives in ``.tmp-<pid>-<random>`` siblings on the same filesystem;
an interrupted run leaves only such a sibling, which ``clean_stale_temps``
removes once its owner process is gone.

The lab's copies of kernel sources (a plain tree's, a working tree's changes) are
kept with ``put_file`` and ``put_symlink``, which write only what differs, so make
rebuilds only that; a directory that several runs rewrite is held with ``locked``.

Kept at the top of ``lab/`` rather than in ``lab/kernel/``: results, the VM
and the benchmarks publish files too, and none of them should depend on the
kernel package for it.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("lab.kernel.cache")

TEMP_PREFIX = ".tmp-"


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def temp_dir(parent: Path) -> Iterator[Path]:
    """A fresh ``.tmp-<pid>-*`` directory in ``parent``, removed on exit unless published.

    Removal also happens on KeyboardInterrupt: the ``finally`` runs for any
    BaseException, so only a SIGKILL (or power loss) can leave it behind.
    """
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", dir=parent))
    try:
        yield tmp
    finally:
        _remove(tmp)


def publish(tmp: Path, final: Path) -> Path:
    """Rename ``tmp`` to ``final`` atomically; if ``final`` appeared meanwhile, keep it.

    Two runs fetching the same kernel both build a temp dir; the first rename
    wins and the second run's copy is dropped.  Returns ``final``.  The entry
    becomes world-readable (mkdtemp made it private while it was half-built).
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp.chmod(0o755)
    try:
        os.rename(tmp, final)
    except OSError as exc:
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
        log.info("%s appeared meanwhile (another run?); keeping it", final)
        _remove(tmp)
    return final


def _owner_alive(name: str) -> bool:
    """Whether the pid embedded in a ``.tmp-<pid>-*`` name is still running."""
    pid_text = name[len(TEMP_PREFIX):].split("-", 1)[0]
    if not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return True
    if pid <= 0 or pid >= 2**31:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True


def clean_stale_temps(parent: Path) -> list[Path]:
    """Remove ``.tmp-*`` directories in ``parent`` whose owner process is gone."""
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    for child in sorted(parent.iterdir()):
        if child.name.startswith(TEMP_PREFIX) and not _owner_alive(child.name):
            log.info("removing %s left by an interrupted run", child)
            _remove(child)
            removed.append(child)
    return removed


@contextmanager
def temp_path(final: Path) -> Iterator[Path]:
    """A temporary path beside ``final``: write it in the block, it replaces ``final`` after.

    On an exception (KeyboardInterrupt included) the temporary is removed and
    ``final`` is left as it was.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=f"-{final.name}",
                                dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        _remove(tmp)


def write_text(path: Path, text: str) -> Path:
    """Replace ``path`` with ``text`` in one rename (readers see the old or the new file)."""
    with temp_path(path) as tmp:
        tmp.write_text(text)
        tmp.chmod(0o644)
    return path


def _clear(path: Path) -> None:
    """Remove what is at ``path`` (a link, a file or a directory) to make room for another."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def put_file(path: Path, data: bytes, *, executable: bool) -> bool:
    """Make ``path`` a file holding ``data`` (mode 0755 or 0644), written through one
    rename and only when its content or mode differ; True when it was written.

    An unchanged file keeps its mtime: make sees nothing to rebuild for it.
    """
    perm = 0o755 if executable else 0o644
    if (path.is_file() and not path.is_symlink() and (path.stat().st_mode & 0o777) == perm
            and path.read_bytes() == data):
        return False
    if path.is_symlink() or path.is_dir():
        _clear(path)
    with temp_path(path) as tmp:
        tmp.write_bytes(data)
        tmp.chmod(perm)
    return True


def put_symlink(path: Path, target: str) -> bool:
    """Make ``path`` a symbolic link to ``target``, unless it is one; True when it changed."""
    if path.is_symlink() and os.readlink(path) == target:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    _clear(path)
    path.symlink_to(target)
    return True


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """``path`` (a lock file, made if missing) held exclusively until the block ends: runs
    that rewrite one directory (a checkout, a copy, an object tree) take turns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def cannot_publish(path: Path, *, directory: bool = False) -> str:
    """Why publishing ``path`` (a file, or a new ``directory``) would fail, or "".

    A file or directory in its way, or a place this user may not write: tried by
    making and removing a temporary directory where it would be made (os.access
    says yes to root on a read-only file system or in /proc).
    """
    path = Path(os.path.abspath(path))
    if path.is_dir() and not directory:
        return f"{path} is a directory"
    if path.exists() and directory and not path.is_dir():
        return f"{path} is a file"
    base = path.parent
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        return f"{base} is a file, not a directory"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=TEMP_PREFIX + "probe-", dir=base))
    except OSError as exc:
        return f"{base} is not writable ({exc.strerror})"
    return ""
