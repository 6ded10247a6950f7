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

The count is each process's own: a guest of 1 vCPU beside one of 2 counts more
slots over the same files, and a guest booted single-threaded holds a whole slot.
The host's cores are those this process may run on (its cpuset), not a CFS quota.

The slots are ``flock``ed files in a per-user directory shared by every lab run on
the host (a holder that dies releases its slot).  ``KERNEL_LAB_CPU_SLOTS`` sets the
count; 0 turns the limit off.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pwd
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from lab.errors import UserError

log = logging.getLogger("lab.slots")

SLOTS_ENV = "KERNEL_LAB_CPU_SLOTS"
POLL_S = 0.1
SHOWN_S = 0.05  # a wait this long is kept (the run's phases, the test's record)
# Longer than what a holder does in the default suites: a boot (its timeout, 180 s,
# and a retry) or a race loop (its bound plus the call timeout's margin; a soak with
# KERNEL_LAB_RACE=seconds=N may hold longer).  Past it the waiter goes on without a
# slot, and the phase or the record says so, rather than wait on something stuck
# (a run stopped with Ctrl-Z keeps its slot).
MAX_WAIT_S = 900.0
# A process that just let go of a slot waits this long before taking one again, so
# that a waiter polling every POLL_S gets it (the next saturating test of a cell
# would otherwise take it back within a round trip).
REGRAB_S = 2 * POLL_S

_held = 0  # slots this process holds: a nested hold (a reboot inside a held test) waits for none
_released = 0.0  # when this process last let go of one (time.monotonic())


def host_cores() -> int:
    """The cores this process may run on: its cpuset (a container's CPU quota, as
    `docker --cpus`, is not seen)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def configured(env: dict[str, str] | None = None) -> int | None:
    """``KERNEL_LAB_CPU_SLOTS`` as a count (0: no limit), or None when unset; UserError if bad."""
    text = (os.environ if env is None else env).get(SLOTS_ENV, "").strip()
    if not text:
        return None
    if not (text.isascii() and text.isdecimal()):
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
    """Where the slot files are: one directory per user, in the home directory from the
    password database, so that every lab run of the user finds it whatever its
    environment (cron, CI, sudo -u, another $HOME or $XDG_*)."""
    return Path(pwd.getpwuid(os.getuid()).pw_dir) / ".cache" / "kernel-lab-cpu-slots"


@dataclass(frozen=True)
class Wait:
    """How a ``hold()`` began: the seconds spent waiting, and whether a slot is held
    (False: the limit is off, the process already holds one, or the wait gave up)."""

    seconds: float
    held: bool


class CpuSlots:
    """``count`` slots in ``directory``; ``hold()`` one while the guest's vCPUs are all busy."""

    def __init__(self, count: int, directory: Path | None = None) -> None:
        self.count = count
        self.directory = directory or slot_dir()

    @classmethod
    def for_guest(cls, vcpus: int) -> CpuSlots:
        return cls(slot_count(vcpus))

    def _try(self) -> int | None:
        """An fd holding a free slot's lock, or None when every slot is taken.

        OSError when the slots cannot be used at all (an unwritable home, a file
        system without locks): the caller goes on without one.
        """
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for i in range(self.count):
            fd = os.open(self.directory / f"slot-{i}.lock",
                         os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            except OSError:
                os.close(fd)
                raise
            return fd
        return None

    def _holders(self) -> str:
        names = []
        for i in range(self.count):
            with contextlib.suppress(OSError):
                names.append((self.directory / f"slot-{i}.lock").read_text().strip())
        return "; ".join(n for n in names if n) or "another guest"

    @contextlib.contextmanager
    def hold(self, what: str, *, max_wait: float = MAX_WAIT_S,
             on_wait: Callable[[str], None] | None = None) -> Iterator[Wait]:
        """Hold a slot for ``what`` (the limit is advisory: when no slot can be had,
        ``what`` goes on without one, and the ``Wait`` it yields says so).

        ``on_wait(holders)`` is called once when the wait begins (a progress line).
        """
        global _held, _released
        if self.count <= 0 or _held:
            yield Wait(0.0, held=False)
            return
        time.sleep(max(0.0, _released + REGRAB_S - time.monotonic()))  # not a wait for others
        started = time.monotonic()
        try:
            fd = self._try()
            if fd is None:
                holders = self._holders()
                log.info("%s waits for a CPU slot (%d on this host, held by: %s)", what,
                         self.count, holders)
                if on_wait is not None:
                    on_wait(holders)
            while fd is None and time.monotonic() - started < max_wait:
                time.sleep(POLL_S)
                fd = self._try()
        except OSError as exc:
            log.warning("%s: the CPU slots in %s cannot be used (%s); going on without one",
                        what, self.directory, exc)
            fd = None
        waited = time.monotonic() - started
        if fd is None:
            if waited >= max_wait:
                log.warning("%s: no CPU slot after %.0f s (held by: %s); going on without one",
                            what, waited, self._holders())
            yield Wait(waited, held=False)
            return
        _held += 1
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                os.write(fd, f"pid {os.getpid()}: {what}\n".encode())
            yield Wait(waited, held=True)
        finally:
            _held -= 1
            _released = time.monotonic()
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # releases the lock
