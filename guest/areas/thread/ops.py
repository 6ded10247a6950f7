"""thread.*: run an op in a background thread, watch it inside the kernel, signal it, join it.

Some claims are about a syscall while it waits: io_destroy sleeping uninterruptibly
(D state) until in-flight I/O has completed, io_getevents woken by io_destroy, a pipe
read inside io_submit cut short by a signal.  The op runs in a thread of its own (cffi
drops the GIL around the C call, so the agent keeps answering requests meanwhile); the
thread's state in the kernel comes from /proc/self/task/TID/stat and .../syscall, and a
signal goes to that thread alone (pthread_kill), never to the agent as a whole.

Every wait here is bounded.  A thread whose op never returns stays listed (agent.reset
reports it): Python cannot kill a thread, only the fds and contexts it waits on can be
closed, which is what the reset does next.
"""

from __future__ import annotations

import errno
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from guest import objects
from guest.areas.sys.raw import SYSCALLS, syscall_number
from guest.objects import ResetStep, Table
from guest.registry import lookup
from guest.state import SLOWDOWN

# Signals a test may send: handled by a no-op handler, so only their effect on a
# sleeping syscall is seen (the default action of either would end the agent).
SIGNALS = ("SIGUSR1", "SIGUSR2")


@dataclass
class Job:
    op: str
    thread: threading.Thread = field(init=False)
    tid: int = 0
    started_ns: int = 0
    ended_ns: int = 0
    signalled_ns: list[int] = field(default_factory=list)
    outcome: dict[str, Any] = field(default_factory=dict)  # {"value"} | {"errno"} | {"error"}
    ready: threading.Event = field(default_factory=threading.Event)


JOBS: Table[Job] = Table("thread")
_HANDLED: set[int] = set()


def _run(job: Job, handler: Callable[..., Any], args: dict[str, Any]) -> None:
    job.tid = threading.get_native_id()
    job.started_ns = time.monotonic_ns()
    job.ready.set()
    try:
        job.outcome = {"value": handler(**args)}
    except OSError as exc:
        if exc.errno is None:
            job.outcome = {"error": f"OSError: {exc}"}
        else:
            job.outcome = {"errno": errno.errorcode.get(exc.errno, str(exc.errno))}
    except Exception as exc:
        job.outcome = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        job.ended_ns = time.monotonic_ns()


def thread_start(op: str, args: dict[str, Any] | None = None) -> int:
    """Start ``op(**args)`` in a new thread; returns its handle once the thread runs."""
    handler = lookup(op)
    job = Job(op)
    job.thread = threading.Thread(target=_run, args=(job, handler, args or {}),
                                  name=f"thread.start {op}", daemon=True)
    job.thread.start()
    if not job.ready.wait(10 * SLOWDOWN):
        raise RuntimeError(f"thread for {op} did not start")
    return JOBS.add(job)


def _syscall_names() -> dict[int, str]:
    return {syscall_number(name): name for name in SYSCALLS}


def task_state(tid: int) -> dict[str, Any]:
    """A thread's scheduler state (R, S, D...) and the syscall it is in, from /proc."""
    try:
        with open(f"/proc/self/task/{tid}/stat", encoding="ascii") as f:
            stat = f.read()
        with open(f"/proc/self/task/{tid}/syscall", encoding="ascii") as f:
            sysline = f.read().split()
    except (FileNotFoundError, ProcessLookupError):
        # The thread has exited: its /proc entry is gone, or (while it exits) still
        # listed but its syscall file answers ESRCH.
        return {"state": None, "syscall": None}
    # "TID (comm) S ...": the comm may hold spaces and parentheses, the state follows
    # the last ')'.
    state = stat.rsplit(")", 1)[1].split()[0]
    # "NR args... sp pc" while in a syscall, "-1 sp pc" when blocked outside one,
    # "running" when on a CPU (the kernel cannot sample a running task).
    syscall: str | int | None = None
    if sysline and sysline[0] not in ("running", "-1"):
        nr = int(sysline[0])
        syscall = _syscall_names().get(nr, nr)
    return {"state": state, "syscall": syscall}


def thread_state(thread: int) -> dict[str, Any]:
    job = JOBS.get(thread)
    done = not job.thread.is_alive()
    out = {"done": done, **({"state": None, "syscall": None} if done else task_state(job.tid))}
    out["tid"] = job.tid
    return out


def thread_wait_blocked(thread: int, syscall: str, states: list[str] | None = None,
                        timeout_ms: int = 10000) -> dict[str, Any]:
    """Wait until the thread sleeps inside ``syscall`` in one of ``states`` (default S or D).

    ETIMEDOUT when it does not get there in time, ECHILD when its op returned first
    (the op's outcome is then in thread.join).
    """
    want = set(states or ["S", "D"])
    if syscall not in SYSCALLS:
        raise ValueError(f"thread.wait_blocked: {syscall!r} is not one of {', '.join(SYSCALLS)}")
    job = JOBS.get(thread)
    deadline = time.monotonic() + timeout_ms / 1000 * SLOWDOWN
    samples = 0
    while True:
        samples += 1
        got = thread_state(thread)
        if got["done"]:
            raise OSError(errno.ECHILD, f"{job.op} returned before it blocked: {job.outcome}")
        if got["syscall"] == syscall and got["state"] in want:
            return {**got, "samples": samples,
                    "waited_ns": time.monotonic_ns() - job.started_ns}
        if time.monotonic() > deadline:
            raise OSError(errno.ETIMEDOUT, f"{job.op} not blocked in {syscall} "
                          f"({sorted(want)}) after {timeout_ms} ms: last {got}")
        time.sleep(0.002)


def _noop(signum: int, frame: Any) -> None:
    pass


def thread_signal(thread: int, signal_name: str = "SIGUSR1") -> dict[str, Any]:
    """Send ``signal_name`` to the thread alone; returns the thread's state just before."""
    if signal_name not in SIGNALS:
        raise ValueError(f"thread.signal: {signal_name!r} is not one of {', '.join(SIGNALS)}")
    signum = int(getattr(signal, signal_name))
    if signum not in _HANDLED:
        signal.signal(signum, _noop)
        # No SA_RESTART: a syscall the signal interrupts returns EINTR rather than
        # being restarted, so what the kernel itself does with the signal is seen.
        signal.siginterrupt(signum, True)
        _HANDLED.add(signum)
    job = JOBS.get(thread)
    before = thread_state(thread)
    if job.thread.ident is None or before["done"]:
        raise OSError(errno.ESRCH, f"{job.op} has already returned")
    job.signalled_ns.append(time.monotonic_ns())
    signal.pthread_kill(job.thread.ident, signum)
    return before


def thread_join(thread: int, timeout_ms: int = 30000) -> dict[str, Any]:
    """The op's outcome ({"value"}, {"errno"} or {"error"}) and its timings, once it returned.

    ETIMEDOUT when it is still running after ``timeout_ms`` (it stays listed).
    """
    job = JOBS.get(thread)
    job.thread.join(timeout_ms / 1000 * SLOWDOWN)
    if job.thread.is_alive():
        raise OSError(errno.ETIMEDOUT, f"{job.op} still running after {timeout_ms} ms: "
                      f"{task_state(job.tid)}")
    JOBS.pop(thread)
    out: dict[str, Any] = {**job.outcome, "elapsed_ns": job.ended_ns - job.started_ns}
    if job.signalled_ns:
        out["after_first_signal_ns"] = job.ended_ns - job.signalled_ns[0]
        out["signals"] = len(job.signalled_ns)
    return out


def running() -> int:
    """Threads still running (agent.reset reports them); finished ones are forgotten."""
    for handle, job in JOBS.items():
        if not job.thread.is_alive():
            JOBS.pop(handle)
    return len(JOBS)


def join_all(timeout_s: float) -> int:
    """Give running threads ``timeout_s`` in all to return; how many are still running."""
    deadline = time.monotonic() + timeout_s
    for _, job in JOBS.items():
        job.thread.join(max(0.0, deadline - time.monotonic()))
    return running()


def thread_affinity(cpus: list[int] | None = None) -> list[int]:
    """The calling thread's CPU affinity; with ``cpus``, set it and return the previous one."""
    before = sorted(os.sched_getaffinity(0))
    if cpus is not None:
        os.sched_setaffinity(0, set(cpus))
        _SAVED_AFFINITY.setdefault("agent", before)
    return before


_SAVED_AFFINITY: dict[str, list[int]] = {}


def restore_affinity() -> bool:
    """Undo thread.affinity (agent.reset); True when there was something to undo."""
    saved = _SAVED_AFFINITY.pop("agent", None)
    if saved is None:
        return False
    os.sched_setaffinity(0, set(saved))
    return True


RESET: tuple[ResetStep, ...] = (
    (objects.THREADS, lambda: {"threads": join_all(5.0)}),
    (objects.WOKEN, lambda: {"threads": join_all(1.0)}),
    (objects.SETTINGS, lambda: {"affinity": int(restore_affinity())}),
)


OPS: dict[str, Callable[..., Any]] = {
    "thread.start": thread_start,
    "thread.state": thread_state,
    "thread.wait_blocked": thread_wait_blocked,
    "thread.signal": thread_signal,
    "thread.join": thread_join,
    "thread.affinity": thread_affinity,
}
