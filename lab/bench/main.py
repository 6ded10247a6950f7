"""`nox -s bench`: speed figures measured side by side in one run, printed as ratios.

- boot: plain ``vng --exec true`` vs the lab's boot -> agent ready, same kernel,
  same vCPUs and memory, rounds interleaved so load drifts hit both alike
  (goal: ratio <= 1.5), lab.bench.boot;
- shell: ``lab shell -- true`` from the command to its exit vs ``vng --exec true``, in
  the same rounds (the boot's alternation), lab.bench.boot;
- run: the whole default ``lab run`` on a warm cache;
- race: destroy-vs-submit iterations per second in the agent's C loop vs a plain C
  program doing the same loop in the same VM (goal: ratio >= 0.9), and the concurrent
  destroy's overlap rate hammered vs one call each (goal: ratio >= 10), lab.bench.race;
- build: cold ``base`` vs ``vng --kconfig`` on the same tree (goal <= 0.40), rebuild
  after touching fs/aio.c vs cold (goal <= 0.2), cache-hit cost, a `lab bisect` step
  to a commit changing only fs/aio.c vs a cold build of the same config (goal <= 0.2),
  a real bisection's median step, lab.bench.build;
- matrix (``--matrix``, long): the four Debian kernels with --workers 2 vs --workers 1
  (goal <= 0.65), lab.bench.workers.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lab import atomic
from lab.bench.boot import (
    check_can_power_off,
    lab_ready_seconds,
    lab_run_seconds,
    lab_shell_seconds,
    median_slices,
    plain_vng_seconds,
)
from lab.bench.race import race_rate
from lab.errors import LabError
from lab.kernel.resolve import resolve_kernel
from lab.paths import cache_root, default_results_root
from lab.vm.accel import choose_accel
from lab.vm.sandbox import OFF
from lab.vm.vmconfig import VmConfig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lab-bench", description=__doc__)
    p.add_argument("--kernel", default="debian:7.2")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cache", type=Path)
    p.add_argument("--skip-run", action="store_true", help="skip the whole `lab run` timing")
    p.add_argument("--skip-race", action="store_true", help="skip the race-loop rate")
    p.add_argument("--skip-build", action="store_true",
                   help="skip the kernel build timings (three cold builds and a real "
                        "bisection: ~30 min here)")
    p.add_argument("--skip-boot", action="store_true",
                   help="skip the boot rounds (vng --exec true vs the lab's boot)")
    p.add_argument("--skip-shell", action="store_true",
                   help="skip `lab shell -- true` in the boot rounds")
    p.add_argument("--matrix", action="store_true",
                   help="also time the four Debian kernels with --workers 2 vs 1 (~10 min)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    try:
        return _bench(args)
    except LabError as exc:
        print(f"lab-bench: error: {exc}", file=sys.stderr)
        return exc.exit_code


def _bench(args: argparse.Namespace) -> int:
    cache = cache_root(args.cache)
    kernel = resolve_kernel(args.kernel, cache=cache)
    check_can_power_off(kernel)
    cfg = VmConfig(accel=choose_accel(cache, image=kernel.image))
    figures: dict[str, Any] = {"kernel": kernel.identity(), "accel": cfg.accel,
                               "cpus": cfg.cpus, "memory": cfg.memory}
    with tempfile.TemporaryDirectory(prefix="lab-bench-") as tmp_text:
        tmp = Path(tmp_text)
        vng_times: list[float] = []
        lab_times: list[float] = []
        lab_slices: list[list[tuple[str, float]]] = []
        open_times: list[float] = []  # the same boot with the walls down (sandbox.OFF)
        shell_times: list[float] = []  # `lab shell -- true`, command to exit
        for i in range(0 if args.skip_boot else args.rounds):
            vng_times.append(plain_vng_seconds(kernel, cfg, cache=cache,
                                               log_path=tmp / f"vng-{i}.log"))
            ready, slices = lab_ready_seconds(kernel, cfg, cache=cache, run_dir=tmp)
            lab_times.append(ready)
            lab_slices.append(slices)
            open_times.append(lab_ready_seconds(kernel, cfg, cache=cache, run_dir=tmp,
                                                isolation=OFF)[0])
            if not args.skip_shell:
                shell_times.append(lab_shell_seconds(args.kernel, cache=cache,
                                                     out=tmp / "shell",
                                                     log_path=tmp / f"shell-{i}.log"))
            print(f"round {i + 1}: vng --exec true {vng_times[-1]:.1f}s, "
                  f"lab boot->agent ready {lab_times[-1]:.1f}s "
                  f"(walls down: {open_times[-1]:.1f}s)"
                  + (f", lab shell -- true {shell_times[-1]:.1f}s" if shell_times else ""),
                  flush=True)
        if vng_times:
            vng_med, lab_med = statistics.median(vng_times), statistics.median(lab_times)
            figures["boot"] = {"vng_exec_true_s": vng_times, "lab_agent_ready_s": lab_times,
                               "ratio": round(lab_med / vng_med, 2), "goal": "<= 1.5",
                               "slices_median_s": median_slices(lab_slices),
                               "walls_down_agent_ready_s": open_times,
                               "isolation_ratio": round(
                                   lab_med / statistics.median(open_times), 2),
                               "load_after": list(os.getloadavg())}
            if shell_times:
                figures["shell"] = {"lab_shell_true_s": shell_times,
                                    "ratio": round(statistics.median(shell_times) / vng_med, 2)}
            # lab run compares its boots with this host's own baseline (lab.results.summary).
            atomic.write_text(cache / "bench" / "baseline.json", json.dumps(
                {"vng_exec_true_s": vng_med, "kernel": kernel.release, "accel": cfg.accel}))
        if not args.skip_run:
            wall, rc = lab_run_seconds(args.kernel, cache=cache, out=tmp / "runs")
            figures["lab_run"] = {"wall_s": round(wall, 1), "exit": rc}
        if not args.skip_race:
            figures["race"] = race_rate(kernel, cfg, cache=cache, run_dir=tmp)
            print(f"race loop: agent {figures['race']['agent_per_s']:.1f}/s vs plain C "
                  f"{figures['race']['plain_per_s']:.1f}/s", flush=True)
        if not args.skip_build:
            from lab.bench.build import BENCHES

            for name, bench in BENCHES.items():
                figures[name] = bench(None, cache)
                print(f"{name}: {json.dumps(figures[name])}", flush=True)
        if args.matrix:
            from lab.bench.workers import matrix_ratio

            figures["matrix"] = matrix_ratio(cache=cache, out=tmp / "matrix")
    print()
    print(f"kernel {kernel.spec} ({kernel.release}), accel {cfg.accel}, "
          f"{cfg.cpus} vCPUs, {cfg.memory}")
    if "boot" in figures:
        print(f"boot: vng --exec true median {vng_med:.1f}s | lab boot->agent ready median "
              f"{lab_med:.1f}s | ratio {figures['boot']['ratio']:.2f}x (goal <= 1.5x) | "
              f"load average after {figures['boot']['load_after'][0]:.2f}")
        print(f"isolation: lab boot with its walls (allow-list root, restricted network) / "
              f"without, median: {figures['boot']['isolation_ratio']:.2f}x")
        print("lab boot slices (median s): " + ", ".join(
            f"{n} {s:.2f}" for n, s in figures["boot"]["slices_median_s"].items()))
    if "shell" in figures:
        print(f"shell: lab shell -- true median "
              f"{statistics.median(figures['shell']['lab_shell_true_s']):.1f}s | vng --exec "
              f"true median {vng_med:.1f}s | ratio {figures['shell']['ratio']:.2f}x")
    if "lab_run" in figures:
        print(f"lab run (default suite, warm cache): {figures['lab_run']['wall_s']}s, "
              f"exit {figures['lab_run']['exit']}")
    if "race" in figures:
        race = figures["race"]
        print(f"race loop: agent {race['agent_per_s']:.1f}/s | plain C {race['plain_per_s']:.1f}/s"
              f" | ratio {race['ratio']:.2f}x (goal >= 0.9x)")
        ov = race["overlap"]
        print("concurrent destroy overlapped rounds: hammered " + ", ".join(
            f"{r['overlapped']}/{r['rounds']}" for r in ov["hammer"]) + " | one call each "
            + ", ".join(f"{r['overlapped']}/{r['rounds']}" for r in ov["one_call"])
            + f" | ratio {ov['ratio']:.1f}x (goal {ov['goal']}x) | margin/window ns "
            + ", ".join(f"{r['margin_ns']}/{r['window_ns']}" for r in ov["hammer"]))
    for name in ("build_base_vs_vng", "build_rebuild_touch", "build_cache_hit",
                 "build_bisect_step", "build_bisect_real"):
        if name in figures:
            print(f"{name}: {json.dumps(figures[name])}")
    if "matrix" in figures:
        m = figures["matrix"]
        print(f"matrix ({', '.join(m['kernels'])}): --workers 2 {m['workers_2']['wall_s']}s | "
              f"--workers 1 {m['workers_1']['wall_s']}s | ratio {m['ratio']:.2f}x (goal <= "
              f"0.65x) | load average before {m['workers_1']['load_before'][0]:.2f} and "
              f"{m['workers_2']['load_before'][0]:.2f}, after {m['load_after'][0]:.2f}, "
              f"{m['cpus']} CPUs, busy {m['workers_1']['busy_cores']} and "
              f"{m['workers_2']['busy_cores']}")
    out = default_results_root() / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"figures: {out}")
    return 0

