"""What the guest may see of the host, and how QEMU is started so that it sees only that.

The tree itself is built by ``lab/vm/jail.py`` in a mount namespace of QEMU's own (its
docstring says what the tree holds).  This module decides whether the host allows such a
namespace (once per process: root may always make one; a normal user needs unprivileged
user namespaces, which some hosts refuse: Ubuntu's AppArmor restriction, a container's
seccomp profile), lists the directories of the lab's own that the guest needs, and
wraps virtme-run's argv in the jail.

A host that refuses the namespace still boots guests, with the whole root exported as
before, and says so once: what a guest can read then (everything the lab's user can) is
in README.md (What a guest can do to the host).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from lab.paths import GUEST_DIR
from lab.vm import hostroot

log = logging.getLogger("lab.vm.sandbox")

JAIL = Path(__file__).with_name("jail.py")
EXPORT_DIR = "export"  # in the VM's directory: where the tree is mounted (empty outside)
# Always visible in the tree (jail.SYSTEM): a directory under one needs no bind of its own.
_SYSTEM = tuple(Path("/" + n) for n in ("usr", "bin", "sbin", "lib", "lib32", "lib64",
                                         "libx32"))


@dataclass(frozen=True)
class Isolation:
    """What walls a guest has: ``files``, its root is the jail's allow-list (else the whole
    host root, read-only: ``reason`` says why); ``network``, QEMU's user network restricted
    (only the forwarded SSH port comes in, nothing goes out).  The network wall needs no
    privilege, so only ``OFF`` (the walls' control in tests and the benchmark) lowers it."""

    files: bool
    network: bool = True
    reason: str = ""

    def describe(self) -> str:
        files = "allow-list root" if self.files else f"whole host root ({self.reason})"
        return f"{files}, {'restricted' if self.network else 'open'} network"


# Both walls down: what a guest could do before them (tests/test_isolation_real.py's
# control, the benchmark's baseline).  Nothing a user runs picks it.
OFF = Isolation(files=False, network=False, reason="off: the walls' control")


@functools.cache
def host_isolation() -> Isolation:
    """Whether this host lets the lab build the guest's tree (one probe, ~50 ms)."""
    try:
        res = subprocess.run([sys.executable, "-I", "-S", str(JAIL), "--probe"],
                             capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return _refused(str(exc))
    if res.returncode != 0:
        return _refused(res.stderr.strip().splitlines()[-1] if res.stderr.strip()
                        else f"exit {res.returncode}")
    return Isolation(files=True)


def _refused(why: str) -> Isolation:
    user = "root" if os.getuid() == 0 else "a normal user"
    log.warning("guest isolation unavailable: this host refuses %s a private mount "
                "namespace (%s); guests read the whole host root that the lab's user can "
                "read (README.md: What a guest can do to the host)", user, why)
    return Isolation(files=False, reason=f"mount namespace refused: {why}")


def binds(vmdir: Path, modules: Path | None, staged: Path | None = None) -> list[str]:
    """The directories of the host the guest needs besides the system's (jail.SYSTEM), at
    their own paths: the VM's directory, the guest scripts, the agent's interpreter (the
    directory its path names and its installation), the staged agents (``staged``: the
    guest runs their ``handoff``) and the kernel's modules."""
    wanted = [str(vmdir), str(GUEST_DIR), os.path.dirname(os.path.abspath(sys.executable)),
              *hostroot.interpreter_dirs()]
    if staged is not None:
        wanted.append(str(staged))
    if modules is not None:
        wanted.append(os.path.realpath(modules))
    chosen: list[str] = []
    for d in wanted:
        # At the path the guest is told (a link on the way stays the host's business),
        # unless the system's directories show it already.
        real = Path(os.path.realpath(d))
        if real == Path("/") or any(real == s or real.is_relative_to(s) for s in _SYSTEM):
            continue
        path = os.path.abspath(d)
        if not real.exists() or path in chosen or "\n" in path:
            continue
        chosen.append(path)
    return chosen


def export_root(vmdir: Path) -> Path:
    return vmdir / EXPORT_DIR


def wrap(argv: list[str], *, vmdir: Path, modules: Path | None, staged: Path | None,
         max_file_bytes: int) -> list[str]:
    """``argv`` run inside the jail: the plan written to the VM's directory, the export's
    mount point made."""
    root = export_root(vmdir)
    root.mkdir(exist_ok=True)
    plan = {"root": str(root), "binds": binds(vmdir, modules, staged),
            "max_file_bytes": max_file_bytes}
    (vmdir / "jail.json").write_text(json.dumps(plan, indent=1) + "\n")
    return [sys.executable, "-I", "-S", str(JAIL), str(vmdir / "jail.json"), "--", *argv]
