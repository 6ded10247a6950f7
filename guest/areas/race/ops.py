"""race.* operations: the C race loops of race_*.c, one op per loop.

Each op runs its loop to the end (iterations or seconds, whichever comes
first) and returns the loop's outcome counts and timings as a dict, plus
``rate_per_s``, ``overlap_rate`` (the share of rounds in which one racing
call was in the kernel as the other entered, from the loop's timestamps) and
``any_overlap_rate`` (rounds whose spans merely met; race.h).  The
scenarios decide what counts as a violation or as too little racing; the ops
only count.  A loop stuck in the kernel never returns: the lab's call
timeout turns that into a HANG.

``opts`` names how the threads are driven (race.h RACE_OPT_*): "pin"
(each thread on its own vCPU), "spin" (rounds start at a spinning barrier),
"yield" (sched_yield before each racing call), "hammer" (concurrent_destroy
only: the racers call in a tight loop until one store lets the kernel find
the context).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

from guest import native
from guest.flags import flag_bits

NS = 1_000_000_000


def _fields(cdata: Any) -> dict[str, int]:
    """A result struct's counters by name, its ``tail`` (struct race_tail) flattened in."""
    ffi = native.ffi()
    out: dict[str, int] = {}
    for name, field in ffi.typeof(cdata).item.fields if ffi.typeof(cdata).kind == "pointer" \
            else ffi.typeof(cdata).fields:
        value = getattr(cdata, name)
        out.update(_fields(value) if field.type.kind == "struct" else {name: int(value)})
    return out


def race_result(cdata: Any, rounds: str = "iterations") -> dict[str, Any]:
    """What every race loop returns (its struct, ending in race.h's struct race_tail): its
    counters, ``rate_per_s`` (of ``rounds``), the overlap rates and the opts by name."""
    out: dict[str, Any] = _fields(cdata)
    code = out.pop("first_other_errno")
    out["first_other_errno"] = errno.errorcode.get(code, str(code)) if code else None
    out["timed_out"] = bool(out["timed_out"])
    out["clock_tsc"] = bool(out["clock_tsc"])
    secs = out["elapsed_ns"] / NS
    out["rate_per_s"] = round(out[rounds] / secs, 1) if secs > 0 else 0.0
    total = out["overlap_rounds"]
    out["overlap_rate"] = round(out["overlapped"] / total, 4) if total else 0.0
    out["any_overlap_rate"] = round(out["any_overlap"] / total, 4) if total else 0.0
    out["opts"] = [name for name, bit in opt_bits().items() if out["opts"] & bit]
    return out


def kind_bits() -> dict[str, int]:
    """Kind name -> its RACE_KIND_* bit, as race.h defines it."""
    lib = native.lib()
    return {"read": lib.RACE_KIND_READ, "write": lib.RACE_KIND_WRITE, "poll": lib.RACE_KIND_POLL}


def opt_bits() -> dict[str, int]:
    """Technique name -> its RACE_OPT_* bit, as race.h defines it."""
    lib = native.lib()
    return {"pin": lib.RACE_OPT_PIN, "spin": lib.RACE_OPT_SPIN, "yield": lib.RACE_OPT_YIELD,
            "hammer": lib.RACE_OPT_HAMMER}


# What the loops do unless told otherwise: what paid on TCG (scenarios/races/params.py).
DEFAULT_OPTS = ("pin",)


def _kinds(kinds: list[str]) -> int:
    return flag_bits(kinds, kind_bits(), "kind")


def opts_mask(opts: list[str] | None) -> int:
    """The RACE_OPT_* bits for technique names (None: the defaults)."""
    return flag_bits(DEFAULT_OPTS if opts is None else opts, opt_bits(), "opt")


def destroy_vs_submit(
    path: str | None = None,
    submitters: int = 2,
    nr_events: int = 64,
    kinds: list[str] | None = None,
    polls_per_iter: int = 2,
    write_offset: int = 0,
    iterations: int = 200,
    seconds: float = 10.0,
    max_target: int = 8,
    wait_ms: float = 20.0,
    seed: int = 1,
    opts: list[str] | None = None,
) -> dict[str, Any]:
    """io_submit from ``submitters`` threads while one thread io_destroys the context.

    Reads and writes go to ``path`` with O_DIRECT (writes only at
    ``write_offset`` + 4 KiB per thread); polls wait on a pipe nobody writes.
    """
    bits = _kinds(["read", "write", "poll"] if kinds is None else kinds)
    how = opts_mask(opts)
    fd = -1
    if bits & (native.lib().RACE_KIND_READ | native.lib().RACE_KIND_WRITE):
        if path is None:
            raise ValueError("read and write kinds need a path")
        fd = os.open(path, os.O_RDWR | os.O_DIRECT)
    ffi, lib = native.ffi(), native.lib()
    out = ffi.new("struct race_dvs_result *")
    try:
        native.check(int(lib.race_destroy_vs_submit(
            fd, submitters, nr_events, bits, polls_per_iter, write_offset, iterations,
            int(seconds * NS), max_target, int(wait_ms * 1e6), seed, how, out)))
    finally:
        if fd >= 0:
            os.close(fd)
    return race_result(out)


def concurrent_destroy(threads: int = 4, polls: int = 4, iterations: int = 200,
                       seconds: float = 10.0, opts: list[str] | None = None) -> dict[str, Any]:
    """``threads`` threads io_destroy one context at once, ``polls`` POLLs pending in it."""
    how = opts_mask(opts)
    ffi, lib = native.ffi(), native.lib()
    out = ffi.new("struct race_cd_result *")
    native.check(int(lib.race_concurrent_destroy(threads, polls, iterations,
                                                 int(seconds * NS), how, out)))
    return race_result(out)


def setup_vs_destroy(creators: int = 2, lookers: int = 2, slots: int = 8, nr_events: int = 8,
                     iterations: int = 500, seconds: float = 10.0, seed: int = 1,
                     opts: list[str] | None = None, hold: int = 1) -> dict[str, Any]:
    """Creators io_setup/io_destroy through shared slots while lookers use the ids.

    A looker uses each id it takes for up to ``hold`` calls (until EINVAL).
    """
    how = opts_mask(opts)
    ffi, lib = native.ffi(), native.lib()
    out = ffi.new("struct race_svd_result *")
    native.check(int(lib.race_setup_vs_destroy(creators, lookers, slots, nr_events, hold,
                                               iterations, int(seconds * NS), seed, how,
                                               out)))
    return race_result(out)


def destroy_buffers(path: str, nbufs: int = 12, bufsize: int = 4096, stride: int = 1 << 20,
                    rounds: int = 3, seconds: float = 30.0,
                    settle_ms: float = 1000.0, opts: list[str] | None = None) -> dict[str, Any]:
    """Slow O_DIRECT reads into patterned buffers, io_destroy, then watch the buffers.

    ``settle_ms`` is how long the buffers are watched after io_destroy
    returned: it must exceed the time the reads would still need.
    """
    how = opts_mask(opts)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    ffi, lib = native.ffi(), native.lib()
    out = ffi.new("struct race_buf_result *")
    try:
        native.check(int(lib.race_destroy_buffers(fd, nbufs, bufsize, stride, rounds,
                                                  int(seconds * NS), int(settle_ms * 1e6),
                                                  how, out)))
    finally:
        os.close(fd)
    return race_result(out)


OPS: dict[str, Callable[..., Any]] = {
    "race.destroy_vs_submit": destroy_vs_submit,
    "race.concurrent_destroy": concurrent_destroy,
    "race.setup_vs_destroy": setup_vs_destroy,
    "race.destroy_buffers": destroy_buffers,
}
