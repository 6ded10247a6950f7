"""Write to a temporary, then rename into place: the lab's one way to publish a file or a directory.

A cache entry, a staged agent, an SSH key, a compiled benchmark or a run's
summary either exists whole (published by one ``rename``) or not at all.  Work
in progress lives in ``.tmp-<pid>-<random>`` siblings on the same filesystem;
an interrupted run leaves only such a sibling, which ``clean_stale_temps``
removes once its owner process is gone.

Kept at the top of ``lab/`` rather than in ``lab/kernel/``: results, the VM
and the benchmarks publish files too, and none of them should depend on the
kernel package for it.
"""

from __future__ import annotations

import errno
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
