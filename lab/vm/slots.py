"""The host's CPU slots: how many guests may keep all their vCPUs busy at once.

A guest's boot and a race loop that spins every vCPU each need the host cores its
vCPUs run on.  When more guests do that at once than the host has cores for, the
vCPU threads take turns on the cores, and a race loop's threads are rarely inside
the kernel at the same instant.  Measured on 2 cores, TCG, two guests of 2 vCPUs
running the same suites side by side: `test_rewritten_sqe_leaves_no_file_reference`
overlapped in 3-25% of its rounds against 60-74% with one guest (pipe), its sqpoll
loop ran out of time after 943-3429 of its 4000 rounds (with one guest it ran them
all but once), and two boots at once took as long as two in a row.  So a guest holds
one of ``cores // vcpus`` slots (at least one) while it boots and while it runs a
test marked ``saturates_cpus``: two such phases never share cores they do not have.
The other guests' ordinary tests go on meanwhile (with the slots the pipe loop
overlapped in 17-65%, by what ran beside it).  With enough cores there is a slot for
every guest and nobody waits.

The slots are ``flock``ed files in a per-user directory shared by every lab run on
the host (a holder that dies releases its slot).  ``KERNEL_LAB_CPU_SLOTS`` sets the
count; 0 turns the limit off.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from lab.errors import UserError

log = logging.getLogger("lab.slots")

SLOTS_ENV = "KERNEL_LAB_CPU_SLOTS"
POLL_S = 0.1
SHOWN_S = 0.05  # a wait this long is kept (the run's phases, the test's record)
# Longer than anything a holder does: a boot (its timeout, 180 s, and a retry) or a
# race loop (its bound plus the call timeout's margin).  Past it the waiter goes on
# without a slot and says so, rather than wait on something stuck.
MAX_WAIT_S = 600.0

_held = 0  # slots this process holds: a nested hold (a reboot inside a held test) waits for none


def host_cores() -> int:
    """The cores this process may run on (a CI container's, not the whole host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def configured(env: dict[str, str] | None = None) -> int | None:
    """``KERNEL_LAB_CPU_SLOTS`` as a count (0: no limit), or None when unset; UserError if bad."""
    text = (os.environ if env is None else env).get(SLOTS_ENV, "").strip()
    if not text:
        return None
    if not text.isdigit():
        raise UserError(f"{SLOTS_ENV}={text!r} is not a count; give a whole number of guests "
                        "that may keep their vCPUs busy at once (0: no limit), or unset it")
    return int(text)


def slot_count(vcpus: int, *, env: dict[str, str] | None = None) -> int:
    """How many guests of ``vcpus`` may keep them busy at once here (0: no limit)."""
    given = configured(env)
    if given is not None:
        return given
    return max(1, host_cores() // max(1, vcpus))


def slot_dir() -> Path:
    """Where the slot files are: one per user, so every lab run on the host shares them."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    base = runtime if runtime and os.access(runtime, os.W_OK) else tempfile.gettempdir()
    return Path(base) / f"kernel-lab-cpu-slots-{os.getuid()}"


class CpuSlots:
    """``count`` slots in ``directory``; ``hold()`` one while the guest's vCPUs are all busy."""

    def __init__(self, count: int, directory: Path | None = None) -> None:
        self.count = count
        self.directory = directory or slot_dir()

    @classmethod
    def for_guest(cls, vcpus: int) -> CpuSlots:
        return cls(slot_count(vcpus))

    def _try(self) -> int | None:
        """An fd holding a free slot's lock, or None when every slot is taken."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for i in range(self.count):
            fd = os.open(self.directory / f"slot-{i}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return fd
        return None

    def _holders(self) -> str:
        names = []
        for i in range(self.count):
            with contextlib.suppress(OSError):
                names.append((self.directory / f"slot-{i}.lock").read_text().strip())
        return "; ".join(n for n in names if n) or "another guest"

    @contextlib.contextmanager
    def hold(self, what: str, *, max_wait: float = MAX_WAIT_S) -> Iterator[float]:
        """Hold a slot for ``what``; yields the seconds spent waiting for one."""
        global _held
        if self.count <= 0 or _held:
            yield 0.0
            return
        started = time.monotonic()
        fd = self._try()
        if fd is None:
            log.info("%s waits for a CPU slot (%d on this host, held by: %s)", what,
                     self.count, self._holders())
        while fd is None and time.monotonic() - started < max_wait:
            time.sleep(POLL_S)
            fd = self._try()
        waited = time.monotonic() - started
        if fd is None:
            log.warning("%s: no CPU slot after %.0f s (held by: %s); going on without one",
                        what, waited, self._holders())
            yield waited
            return
        _held += 1
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()}: {what}\n".encode())
            yield waited
        finally:
            _held -= 1
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # releases the lock
