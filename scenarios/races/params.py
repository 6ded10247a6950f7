"""Parameters of the race scenarios (sized for TCG) and how much they must race to decide.

Each scenario's parameters are a frozen dataclass; the tests are parametrized
with one instance, so the test id shows what ran.  ``KERNEL_LAB_RACE`` in the
environment overrides fields for a whole run, e.g. ``iterations=20,seconds=3``
for a smoke run or ``iterations=100000,seconds=600`` for a soak; names a
scenario does not have are ignored by it.

Under TCG, io_destroy dominates each iteration: it waits for an RCU grace
period (percpu_ref_kill of the context's users) and for the context's I/O,
so a few to a few tens of iterations per second is what a guest manages.

``opts`` says how the loops drive their threads (guest/areas/race/race.h
RACE_OPT_*, joined by "+" in ``KERNEL_LAB_RACE``, e.g. ``opts=pin+spin``);
``FLOORS`` below is the least overlap a run must show to decide anything.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, TypeVar

ENV = "KERNEL_LAB_RACE"

# The fast NVMe (1 GiB) is shared with other suites: race writes stay in its
# last 64 MiB, which nothing else uses.
FAST_SCRATCH_OFFSET = 960 << 20

# The slow controller's limit (lab/vm/vm.py VmConfig: throttling.iops-total=25).
SLOW_IOPS = 25


# How the loops drive their threads (guest/areas/race/race.h RACE_OPT_*), measured on
# debian:7.2 under multi-threaded TCG on 2026-12-01, host load 12-14 on 2 cores,
# 2 runs each: share of rounds overlapped, default sizes (guest/areas/race/ops.py
# DEFAULT_OPTS is the same choice):
#                      none   pin   spin  pin+spin  pin+yield
#   destroy_vs_submit   90%   93%    85%     92%       70%
#   concurrent_destroy   1%    1%   0.5%      2%        0%
#   setup_vs_destroy     5%   13%     9%     12%        3%
#   destroy_buffers    100%  100%   100%    100%      100%
# pin pays (setup_vs_destroy 2.5x); a spinning start barrier buys nothing
# measurable at this load; a yield before each call costs everywhere.
OPTS: tuple[str, ...] = ("pin",)
# concurrent_destroy's window is the ~0.5 us a failing io_destroy takes, and one
# call each after a barrier seldom lands in it: on 2026-12-07 (load 6-10 on 2
# cores) 0 of 3,051 rounds overlapped (10 runs of 15 s: pin, pin+spin, 2 or 4
# threads, 0 or 4 polls).  So its racers hammer instead: they call io_destroy in
# a tight loop until one store makes the context findable
# (guest/areas/race/race_concurrent_destroy.c).  Side by side in one guest, 3 runs of
# 15 s each, overlapped of all rounds (load 8.7-10.5):
#   one call each, pin, 4 threads (the old default)   4 of 819    0.5%
#   hammer+pin, 4 threads, 4 polls                   249 of 327   76%
#   hammer+pin, 2 threads, 4 polls                   229 of 611   37%
#   hammer+pin, 2 threads, no polls                  220 of 574   38%
#   hammer, 4 threads, 4 polls                       319 of 431   74%
# Hammering overlaps ~60x as often; unpinned it ran more rounds in each run.
# Single-threaded TCG (--accel tcg-single, load ~3, 2 runs of 15 s each): one call
# each 6 of 902, hammered 311 of 642 (48%): a vCPU switched out mid-call leaves
# its racer in the kernel while the other vCPU's racer enters.
HAMMER: tuple[str, ...] = ("hammer",)


@dataclasses.dataclass(frozen=True)
class DestroyVsSubmit:
    submitters: int = 2
    iterations: int = 300  # ~15/s here: the rounds fill most of the time bound
    seconds: float = 20.0
    nr_events: int = 64
    max_target: int = 8  # destroy after 0..max_target accepted requests
    polls_per_iter: int = 2
    kinds: tuple[str, ...] = ("read", "write", "poll")
    opts: tuple[str, ...] = OPTS


@dataclasses.dataclass(frozen=True)
class ConcurrentDestroy:
    threads: int = 4
    iterations: int = 300  # ~9/s hammered here: the time bound ends the loop first
    seconds: float = 15.0
    polls: int = 4  # pending POLLs make io_destroy cancel and wait: a wider window
    opts: tuple[str, ...] = HAMMER


@dataclasses.dataclass(frozen=True)
class SetupVsDestroy:
    creators: int = 2
    lookers: int = 2
    iterations: int = 300
    seconds: float = 15.0
    slots: int = 8
    nr_events: int = 8
    opts: tuple[str, ...] = OPTS


@dataclasses.dataclass(frozen=True)
class DestroyBuffers:
    nbufs: int = 12  # reads per round: ~0.5 s of I/O at 25 IOPS
    iterations: int = 3  # rounds
    seconds: float = 30.0
    bufsize: int = 4096
    stride: int = 1 << 20
    opts: tuple[str, ...] = OPTS


@dataclasses.dataclass(frozen=True)
class SqeDoubleRead:
    iterations: int = 4000  # rounds, one SQE each: ~250/s entered, ~25/s by SQPOLL
    seconds: float = 20.0
    # NOPs before the SQE in its batch, so the kernel reads it later: with none,
    # 0 of 1500 submissions saw a rewrite (multi-threaded TCG), with 16, 3.5%.
    lead: int = 16
    linger_us: float = 200.0  # rewriting goes on this long after the kernel took it
    # The rewriter on its own vCPU, polling without yielding: 12% of submissions
    # saw a rewrite, against 6% pinned only and 7% with neither (2 runs each).
    pipe_opts: tuple[str, ...] = ("pin", "spin")
    # With SQPOLL the kernel's thread needs a vCPU too: pinned, the rewriter
    # collided with it (8% saw a rewrite); left to the scheduler, 49%.
    sqpoll_opts: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Floor:
    """The least racing that decides: fewer overlapped rounds than this is INCONCLUSIVE.

    A round overlapped when its racing calls were in the kernel at the same
    time, by the loop's own timestamps (guest/areas/race/race.h).  ``rate`` is the
    share of rounds that must have overlapped, ``rounds`` the least number.
    """

    rate: float
    rounds: int
    why: str


# The floors, from the same measurements (multi-threaded TCG vs --accel tcg-single,
# debian:7.2, load 12-14 on 2 cores): each is well below what racing runs show, so
# that a loaded runner still decides, and the reason says where it comes from.
FLOORS: dict[str, Floor] = {
    "destroy_vs_submit": Floor(0.25, 5, "a submitter was in io_submit as io_destroy "
                               "entered in 90-93% of rounds, single-threaded TCG too "
                               "(a vCPU paused mid-syscall leaves its thread in the kernel)"),
    # 7 overlaps: a 52% chance to see a bug that shows in one overlap in ten (POWER_P).
    "concurrent_destroy": Floor(0.05, 7, "with the racers hammering, a loser was inside "
                                "the winner's racy start (its first prefix_ns) in 74% of "
                                "rounds under multi-threaded TCG, 48% single-threaded "
                                "(one call each: 0.5-0.7%)"),
    "setup_vs_destroy": Floor(0.02, 3, "a lookup of the very context was in the kernel as "
                              "its io_destroy entered in 12-13% of destroys, pinned, "
                              "single- or multi-threaded TCG"),
    "destroy_buffers": Floor(0.5, 1, "reads were in flight at a moment inside io_destroy "
                             "in every round: the throttled NVMe keeps them there"),
    "sqe_double_read": Floor(0.01, 5, "the kernel acted on a rewritten SQE in 12% of "
                             "entered submissions under multi-threaded TCG but 0.5% "
                             "single-threaded, and in 40-60% of SQPOLL ones"),
}


# Detection power: the chance that this run saw a bug that shows, with probability
# POWER_P, in any one round whose racing calls overlapped (rounds that did not overlap
# cannot show it).  With n overlapped rounds that is 1 - (1 - POWER_P)**n: one overlap
# gives 10%, 7 give 52%, 29 give 95%.  One p for every race, so that the figures compare;
# a bug that every overlap exposes is seen by any run that overlapped once.
POWER_P = 0.1


def power(overlapped: int, p: float = POWER_P) -> float:
    """The chance that ``overlapped`` overlapped rounds showed a bug of ``p`` per overlap."""
    return 1.0 - (1.0 - p) ** max(0, overlapped)


P = TypeVar("P")


def overrides(text: str | None = None) -> dict[str, str]:
    """``name=value,...`` from the argument or ``$KERNEL_LAB_RACE``."""
    text = os.environ.get(ENV, "") if text is None else text
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{ENV}: {item!r} is not name=value")
        pairs[name.strip()] = value.strip()
    return pairs


def load(cls: type[P], text: str | None = None) -> P:
    """The defaults of ``cls`` with the overrides that name its fields."""
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    changes: dict[str, Any] = {}
    for name, value in overrides(text).items():
        if name in fields:
            kind = type(getattr(cls, name))
            if kind is tuple:  # "a+b"; an empty value is the empty tuple
                changes[name] = tuple(filter(None, value.split("+")))
            else:
                changes[name] = kind(value)
    return dataclasses.replace(cls(), **changes)  # type: ignore[type-var]


def ident(p: Any) -> str:
    """A short test id: the numeric fields that set the loop's size."""
    keys = ("submitters", "threads", "creators", "lookers", "nbufs", "iterations", "seconds")
    parts = [f"{k}{getattr(p, k):g}" for k in keys if hasattr(p, k)]
    if getattr(p, "opts", OPTS) != getattr(type(p)(), "opts", OPTS):  # not the default
        parts.append("opts-" + ("+".join(p.opts) or "none"))
    return "-".join(parts)
