"""Race loops: the agent's C loop against a stand-alone C program, in the same VM, and
how much more a hammered concurrent destroy overlaps than one call each.

The goal (issue 4) is that driving the loops through the agent (Python,
cffi, a JSON request) costs nothing measurable: the agent's
io_submit/io_destroy iterations per second should be at least 0.9x a plain
program's.  The plain program is ``guest/areas/race/race_destroy_submit.c`` with a small
``main()``: the same loop compiled without Python around it, so the ratio
measures the agent's overhead and nothing else.  It is compiled on the host
into the cache (the guest sees the host's root) and run in the guest over SSH.

The second figure (issue 23) is a ratio too: the concurrent-destroy loop's share
of overlapped rounds with its racers hammering (guest/areas/race/race_concurrent_destroy.c
RACE_OPT_HAMMER) over the share with one call each after a barrier, alternated
in the same guest so that the host's load falls on both (goal: >= 10x).
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lab import atomic, proc
from lab.errors import InfraError
from lab.kernel.artifact import Kernel
from lab.paths import GUEST_DIR
from lab.vm.agent import Agent
from lab.vm.ssh import Ssh
from lab.vm.vm import Vm
from lab.vm.vmconfig import VmConfig

RACE_C = GUEST_DIR / "areas" / "race" / "race_destroy_submit.c"
AIO_SYS_H = GUEST_DIR / "areas" / "aio" / "aio_sys.h"  # race.h includes it
CFLAGS = ["-O2", "-pthread"]

PLAIN_MAIN = r"""
/* The destroy-vs-submit loop as a stand-alone program (lab/bench/race.py). */
#define _GNU_SOURCE /* O_DIRECT; the agent's build gets it from Python.h */
#include <stdio.h>
#include "race_destroy_submit.c"

/* name is one of the '+'-separated words of list ("spin" must not match "pin"). */
static int has(const char *list, const char *name)
{
    size_t n = strlen(name);

    for (const char *p = list; *p; p += strcspn(p, "+"), p += *p == '+')
        if (strncmp(p, name, n) == 0 && (p[n] == '+' || p[n] == 0))
            return 1;
    return 0;
}

int main(int argc, char **argv)
{
    struct race_dvs_result o;
    int fd = -1;
    unsigned kinds = 0, opts = 0;
    long r;

    if (argc != 13) {
        fprintf(stderr, "usage: %s PATH SUBMITTERS NR_EVENTS KIND[+KIND] POLLS WRITE_OFFSET "
            "ITERATIONS DURATION_NS MAX_TARGET WAIT_NS SEED OPT[+OPT]|-\n", argv[0]);
        return 2;
    }
    if (strcmp(argv[1], "-") != 0) {
        fd = open(argv[1], O_RDWR | O_DIRECT);
        if (fd < 0) {
            perror(argv[1]);
            return 1;
        }
    }
    /* Kinds by name, so that race.h stays the one place their bits are defined. */
    if (has(argv[4], "read"))
        kinds |= RACE_KIND_READ;
    if (has(argv[4], "write"))
        kinds |= RACE_KIND_WRITE;
    if (has(argv[4], "poll"))
        kinds |= RACE_KIND_POLL;
    /* The same for the techniques (RACE_OPT_*): "-" for none. */
    if (has(argv[12], "pin"))
        opts |= RACE_OPT_PIN;
    if (has(argv[12], "spin"))
        opts |= RACE_OPT_SPIN;
    if (has(argv[12], "yield"))
        opts |= RACE_OPT_YIELD;
    r = race_destroy_vs_submit(fd, atoi(argv[2]), (unsigned)atoi(argv[3]),
                   kinds, (unsigned)atoi(argv[5]),
                   strtoull(argv[6], NULL, 0), strtoull(argv[7], NULL, 0),
                   strtoull(argv[8], NULL, 0), (unsigned)atoi(argv[9]),
                   strtoull(argv[10], NULL, 0), strtoull(argv[11], NULL, 0), opts, &o);
    if (r < 0) {
        fprintf(stderr, "race_destroy_vs_submit: %s\n", strerror((int)-r));
        return 1;
    }
    printf("{\"iterations\": %llu, \"elapsed_ns\": %llu, \"submit_ok\": %llu, "
           "\"destroy_ns_total\": %llu, \"late_completions\": %llu, \"timed_out\": %llu, "
           "\"overlap_rounds\": %llu, \"overlapped\": %llu}\n",
           (unsigned long long)o.iterations, (unsigned long long)o.tail.elapsed_ns,
           (unsigned long long)o.submit_ok, (unsigned long long)o.destroy_ns_total,
           (unsigned long long)o.late_completions, (unsigned long long)o.tail.timed_out,
           (unsigned long long)o.tail.overlap_rounds, (unsigned long long)o.tail.overlapped);
    return 0;
}
"""


@dataclass(frozen=True)
class BenchParams:
    """One destroy-vs-submit loop, the same for the agent and the plain program."""

    path: str | None  # an O_DIRECT-capable block device or file; None: polls only
    submitters: int = 2
    nr_events: int = 64
    kinds: tuple[str, ...] = ("read", "write", "poll")
    polls_per_iter: int = 2
    write_offset: int = 960 << 20  # the fast NVMe's race scratch area
    iterations: int = 100
    seconds: float = 15.0
    max_target: int = 8
    wait_ms: float = 20.0
    seed: int = 1
    opts: tuple[str, ...] = ("pin",)  # guest/areas/race/ops.py DEFAULT_OPTS


@dataclass(frozen=True)
class RaceRate:
    """Iterations per second (median over repeats) and agent / plain."""

    agent_per_s: float
    plain_per_s: float
    ratio: float
    agent_runs: list[float]
    plain_runs: list[float]
    params: dict[str, Any]


def plain_binary(cache: Path) -> Path:
    """The stand-alone program, compiled with cc into ``cache/bench`` (once per source)."""
    digest = hashlib.sha256(RACE_C.read_bytes() + (RACE_C.parent / "race.h").read_bytes()
                            + (RACE_C.parent / "race_clock.h").read_bytes()
                            + AIO_SYS_H.read_bytes()
                            + PLAIN_MAIN.encode()
                            + " ".join(CFLAGS).encode()).hexdigest()[:16]
    out_dir = cache / "bench"
    binary = out_dir / f"race-plain-{digest}"
    if binary.exists():
        return binary
    with atomic.temp_dir(out_dir) as tmp:
        src = tmp / "race-plain.c"
        src.write_text(PLAIN_MAIN)
        built = tmp / "race-plain"
        proc.run(["cc", *CFLAGS, "-I", str(RACE_C.parent), "-I", str(AIO_SYS_H.parent),
                  "-o", str(built), str(src)],
                 phase="bench build", log_path=out_dir / "build.log", timeout=120)
        os.replace(built, binary)  # a half-written binary is never found
    return binary


def plain_argv(binary: Path, p: BenchParams) -> list[str]:
    return [str(binary), p.path or "-", str(p.submitters), str(p.nr_events), "+".join(p.kinds),
            str(p.polls_per_iter), str(p.write_offset), str(p.iterations),
            str(int(p.seconds * 1e9)), str(p.max_target), str(int(p.wait_ms * 1e6)),
            str(p.seed), "+".join(p.opts) or "-"]


def parse_plain(stdout: str) -> dict[str, Any]:
    """The program's one JSON line, with ``rate_per_s`` added as the agent's op adds it."""
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise ValueError(f"no result line in {stdout[-200:]!r}")
    got: dict[str, Any] = json.loads(lines[-1])
    secs = got["elapsed_ns"] / 1e9
    got["rate_per_s"] = round(got["iterations"] / secs, 1) if secs > 0 else 0.0
    return got


def _agent_rate(agent: Agent, p: BenchParams) -> float:
    got = agent.call("race.destroy_vs_submit", call_timeout=p.seconds + 60.0, path=p.path,
                     submitters=p.submitters, nr_events=p.nr_events, kinds=list(p.kinds),
                     polls_per_iter=p.polls_per_iter, write_offset=p.write_offset,
                     iterations=p.iterations, seconds=p.seconds, max_target=p.max_target,
                     wait_ms=p.wait_ms, seed=p.seed, opts=list(p.opts))
    return float(got["rate_per_s"])


def _plain_rate(ssh: Ssh, binary: Path, p: BenchParams) -> float:
    res = ssh.run(plain_argv(binary, p), timeout=p.seconds + 60.0)
    if res.status != 0:
        raise InfraError(f"the plain race program failed in the guest (status {res.status}): "
                         f"{res.stderr.strip()[-300:]}", phase="bench")
    return float(parse_plain(res.stdout)["rate_per_s"])


def measure(agent: Agent, ssh: Ssh, *, cache: Path, params: BenchParams,
            repeats: int = 3) -> RaceRate:
    """Alternate agent and plain runs ``repeats`` times; compare the median rates."""
    binary = plain_binary(cache)
    agent_runs: list[float] = []
    plain_runs: list[float] = []
    for _ in range(repeats):
        # Alternating spreads slow phases of a shared host over both sides.
        agent_runs.append(_agent_rate(agent, params))
        plain_runs.append(_plain_rate(ssh, binary, params))
    a, b = statistics.median(agent_runs), statistics.median(plain_runs)
    return RaceRate(agent_per_s=a, plain_per_s=b, ratio=round(a / b, 3) if b else 0.0,
                    agent_runs=agent_runs, plain_runs=plain_runs,
                    params={**asdict(params), "kinds": list(params.kinds),
                            "opts": list(params.opts)})


# The concurrent-destroy loop driven two ways (issue 23): the racers hammering a hidden
# context (the test's default) against one call each after a barrier (the default before).
HAMMER_OPTS = ("hammer",)  # scenarios/races/params.py HAMMER
ONE_CALL_OPTS = ("pin",)
# Hammering must overlap at least this many times as often as one call each does.
OVERLAP_GOAL = 10.0


@dataclass(frozen=True)
class OverlapGain:
    """Overlapped rounds of the concurrent-destroy loop, hammered and one call each."""

    hammer: list[dict[str, int]]  # per run: rounds, overlapped, margin and window
    one_call: list[dict[str, int]]
    ratio: float  # hammered overlap rate / one-call overlap rate


def _overlap_run(agent: Agent, opts: tuple[str, ...], seconds: float) -> dict[str, int]:
    got = agent.call("race.concurrent_destroy", call_timeout=seconds + 120.0, threads=4,
                     polls=4, iterations=100_000, seconds=seconds, opts=list(opts))
    # The margin (a stamp's cost plus the vCPUs' estimated TSC offset) against the window
    # (prefix_ns): an overlap must outlast the margin inside the window, so a margin near
    # the window's length hides overlaps, whichever way the racers are driven.
    return {"rounds": int(got["overlap_rounds"]), "overlapped": int(got["overlapped"]),
            "margin_ns": int(got["clock_ns"]), "window_ns": int(got["prefix_ns"])}


def overlap_gain(agent: Agent, *, seconds: float = 15.0, repeats: int = 3) -> OverlapGain:
    """Alternate the two ways ``repeats`` times in one guest; compare their overlap rates.

    One call each often overlaps in none of its rounds: its rate is floored at one
    overlapped round of all it ran, so the ratio is a lower bound then.
    """
    hammer: list[dict[str, int]] = []
    one_call: list[dict[str, int]] = []
    for _ in range(repeats):
        hammer.append(_overlap_run(agent, HAMMER_OPTS, seconds))
        one_call.append(_overlap_run(agent, ONE_CALL_OPTS, seconds))

    def rate(runs: list[dict[str, int]], floor: bool) -> float:
        rounds = sum(r["rounds"] for r in runs)
        overlapped = sum(r["overlapped"] for r in runs)
        return max(overlapped, 1 if floor else 0) / rounds if rounds else 0.0

    base = rate(one_call, True)
    return OverlapGain(hammer=hammer, one_call=one_call,
                       ratio=round(rate(hammer, False) / base, 1) if base else 0.0)


def race_rate(kernel: Kernel, cfg: VmConfig, *, cache: Path, run_dir: Path) -> dict[str, Any]:
    with Vm(kernel, run_dir=run_dir, cache=cache, config=cfg, name="bench-race") as vm:
        assert vm.ssh is not None
        agent = Agent.start(vm.ssh, cache=cache, slowdown=cfg.slowdown)
        rate = measure(agent, vm.ssh, cache=cache,
                       params=BenchParams(path=vm.nvme["fast"].ns, iterations=60))
        gain = overlap_gain(agent)
        agent.close()
    return {"agent_per_s": rate.agent_per_s, "plain_per_s": rate.plain_per_s,
            "ratio": rate.ratio, "goal": ">= 0.9", "agent_runs": rate.agent_runs,
            "plain_runs": rate.plain_runs,
            "overlap": {"hammer": gain.hammer, "one_call": gain.one_call,
                        "ratio": gain.ratio, "goal": f">= {OVERLAP_GOAL:g}"}}
