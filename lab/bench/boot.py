"""Boot figures: plain ``vng --exec true`` vs the lab's boot to agent ready, and a whole run."""

from __future__ import annotations

import logging
import os
import statistics
import sys
import time
from pathlib import Path

from lab import proc
from lab.errors import UserError
from lab.kernel.artifact import Kernel
from lab.vm.agent import Agent
from lab.vm.sandbox import Isolation
from lab.vm.vm import Vm
from lab.vm.vmconfig import VmConfig

log = logging.getLogger("lab.bench.boot")


def plain_vng_seconds(kernel: Kernel, cfg: VmConfig, *, cache: Path, log_path: Path) -> float:
    """Wall time of virtme-ng booting ``kernel`` and running `true`, as a user would."""
    argv = ["vng", "--run", str(kernel.image), "--force-9p", "--cpus", str(cfg.cpus),
            "--memory", cfg.memory, "--exec", "true"]
    if cfg.accel != "kvm":
        argv.append("--disable-kvm")
    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
           "HOME": str(cache / "vng-home")}
    started = time.monotonic()
    # Its exit status is not reliable here (255 after a script that exited 0: the
    # console fallback), so only completion within the timeout counts.
    proc.run(argv, phase="bench vng", log_path=log_path, env=env, timeout=300, check=False)
    return time.monotonic() - started


def lab_ready_seconds(kernel: Kernel, cfg: VmConfig, *, cache: Path, run_dir: Path,
                      isolation: Isolation | None = None) -> tuple[float, list[tuple[str, float]]]:
    """Wall time from starting the lab's VM to the agent answering its first call, and
    the boot's timeline slices (lab.vm.timeline) in order.  ``isolation``: the host's
    walls (None), or ``lab.vm.sandbox.OFF`` for what they cost."""
    started = time.monotonic()
    vm = Vm(kernel, run_dir=run_dir, cache=cache, config=cfg, name="bench", isolation=isolation)
    launched: list[Agent] = []
    # As lab.vm.session does: the agent pushed and started while the guest probes.
    vm.while_probing = lambda ssh: launched.append(
        Agent.launch(ssh, cache=cache, slowdown=cfg.slowdown, timeline=vm.timeline))
    with vm:
        agent = launched[0]
        agent.handshake()
        agent.call("agent.ping")
        ready = time.monotonic() - started
        vm.timeline.mark("ping")
        agent.close()
    return ready, vm.timeline.slices()


def median_slices(rounds: list[list[tuple[str, float]]]) -> dict[str, float]:
    """Each slice's median over the rounds that had it, in the first round's order."""
    names: list[str] = []
    for slices in rounds:
        names += [n for n, _ in slices if n not in names]
    return {n: round(statistics.median([s for r in rounds for m, s in r if m == n]), 2)
            for n in names}


def lab_run_seconds(spec: str, *, cache: Path, out: Path) -> tuple[float, int]:
    started = time.monotonic()
    res = proc.run([sys.executable, "-m", "lab.cli", "run", "--kernel", spec,
                    "--cache", str(cache), "--results", str(out)],
                   phase="bench lab run", log_path=out / "lab-run.log", timeout=1800,
                   check=False)
    return time.monotonic() - started, res.returncode


def lab_shell_seconds(spec: str, *, cache: Path, out: Path, log_path: Path) -> float:
    """Wall time of `lab shell --kernel SPEC -- true`, from the command to its exit: the
    guest a run boots, its agent and kernel-log watch, the command, the guest stopped."""
    started = time.monotonic()
    res = proc.run([sys.executable, "-m", "lab.cli", "shell", "--kernel", spec,
                    "--cache", str(cache), "--results", str(out), "--", "true"],
                   phase="bench lab shell", log_path=log_path, timeout=600, check=False)
    if res.returncode != 0:
        raise UserError(f"`lab shell -- true` exited {res.returncode}; see {log_path}")
    return time.monotonic() - started


def check_can_power_off(kernel: Kernel) -> None:
    """The boot baseline needs `vng --exec true` to end: virtme-ng-init powers off after
    the command, and without ACPI an x86 guest halts instead and QEMU stays up."""
    if kernel.config is not None and kernel.config_option("ACPI") is None:
        raise UserError(f"{kernel.spec} has no CONFIG_ACPI, so plain `vng --exec true` cannot "
                        "power it off and the boot comparison has no baseline; bench a kernel "
                        "with ACPI (--kernel debian:7.2, the default)")
