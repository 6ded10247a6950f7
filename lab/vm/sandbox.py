"""What the guest may see of the host, and how QEMU is started so that it sees only that.

The tree itself is built by ``lab/vm/jail.py`` in a mount namespace of QEMU's own (its
docstring says what the tree holds).  This module decides whether the host allows such a
namespace (once per process, by a probe: a normal user needs unprivileged user
namespaces, which some hosts refuse: Ubuntu's AppArmor restriction; a container's seccomp
profile refuses root too), lists the paths of the lab's own that the guest needs, and
wraps virtme-run's argv in the jail, which also sets its limits.

A host that refuses the namespace boots no guest, unless the user accepts guests that
read the whole root as far as the lab's user can (UNISOLATED_ENV=1): README.md, What a
guest can do to the host.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import pwd
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from lab.errors import UserError
from lab.paths import GUEST_DIR
from lab.vm import jail

log = logging.getLogger("lab.vm.sandbox")

JAIL = Path(__file__).with_name("jail.py")
EXPORT_DIR = "export"  # in the VM's directory: where the tree is mounted (empty outside)
# Always visible in the tree (jail.SYSTEM): a directory under one needs no bind of its own.
_SYSTEM = tuple(Path("/" + n) for n in jail.SYSTEM)


UNISOLATED_ENV = "KERNEL_LAB_UNISOLATED"
REFUSED_FIX = ("allow unprivileged user namespaces (Ubuntu: sudo sysctl "
               "kernel.apparmor_restrict_unprivileged_userns=0; a container: a seccomp "
               "profile that allows unshare), or run the lab as root; or accept guests that "
               f"read what the lab's user can: {UNISOLATED_ENV}=1")


@dataclass(frozen=True)
class Isolation:
    """What walls a guest has: ``files``, its root is the jail's allow-list (else the whole
    host root, read-only: ``reason`` says why); ``network``, QEMU's user network restricted
    (only the forwarded SSH port comes in, nothing goes out).  The network wall needs no
    privilege, so only ``OFF`` (the walls' control in tests and the benchmark) lowers it.
    ``accepted``: a guest without the file wall may boot (the user said so, or OFF)."""

    files: bool
    network: bool = True
    reason: str = ""
    accepted: bool = True

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
    """No tree on this host: no guest boots, unless the user accepts it (UNISOLATED_ENV)."""
    user = "root" if os.getuid() == 0 else "a normal user"
    reason = f"this host refuses {user} a private mount namespace: {why}"
    if os.environ.get(UNISOLATED_ENV) != "1":
        return Isolation(files=False, reason=reason, accepted=False)
    log.warning("guest isolation unavailable (%s); %s=1: guests read the whole host root "
                "that the lab's user can read, /proc included (README.md: What a guest can "
                "do to the host)", reason, UNISOLATED_ENV)
    return Isolation(files=False, reason=f"{reason}; {UNISOLATED_ENV}=1")


def _protected(cache: Path | None) -> list[Path]:
    """What no bind may be or hold: every home of the host's users, /root, /home, the
    lab's user's home and the lab's cache (its binds are of parts inside them)."""
    homes = {Path("/root"), Path("/home"), Path.home()}
    with contextlib.suppress(OSError):
        homes.update(Path(p.pw_dir) for p in pwd.getpwall())
    if cache is not None:
        homes.add(cache)
    # System accounts' "homes" among the system's directories (bin's /bin, sys's /dev) are
    # no one's files.
    return sorted({Path(os.path.realpath(h)) for h in homes if os.path.isdir(h)
                   and not any(Path(os.path.realpath(h)).is_relative_to(s)
                               for s in (*_SYSTEM, Path("/dev")))
                   and os.path.realpath(h) != "/"})


def interpreter_paths() -> list[str]:
    """What the guest runs of the agent's interpreter, each file or directory alone: the
    directory its path names (agent-python: a venv's bin), the binary, its stdlib (with
    lib-dynload) and a shared libpython.  Never its whole prefix: that may be a home
    (``~/.local``, a Python built with --prefix=$HOME), with what else lives there."""
    exe = os.path.abspath(sys.executable)
    paths = [os.path.dirname(exe)]
    # Every link on the way to the binary (a venv's python -> pyenv's python -> python3.11),
    # each bound where it is (the guest sees the binary there), and the binary.
    hop = exe
    for _ in range(40):
        paths.append(hop)
        if not os.path.islink(hop):
            break
        hop = os.path.normpath(os.path.join(os.path.dirname(hop), os.readlink(hop)))
    paths.append(os.path.realpath(os.path.dirname(os.__file__)))
    dynload = sysconfig.get_config_var("DESTSHARED")
    if dynload:
        paths.append(os.path.realpath(str(dynload)))
    libdir, library = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY")
    if libdir and library and ".so" in str(library):
        paths.append(os.path.realpath(os.path.join(str(libdir), str(library))))
    return paths


def binds(vmdir: Path, modules: Path | None, staged: Path | None = None, *,
          cache: Path | None = None, interpreter: list[str] | None = None) -> list[str]:
    """The paths of the host the guest needs besides the system's (jail.SYSTEM), at their
    own paths: the VM's directory, the guest scripts, the agent's interpreter
    (``interpreter_paths``), the staged agents (``staged``: the guest runs their
    ``handoff``) and the kernel's modules.  One that is or holds a home or the cache
    (``_protected``) is refused: the guest would see all of it."""
    wanted = [str(vmdir), str(GUEST_DIR),
              *(interpreter if interpreter is not None else interpreter_paths())]
    if staged is not None:
        wanted.append(str(staged))
    if modules is not None:
        wanted.append(os.path.realpath(modules))
    protected = _protected(cache)
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
        exposed = [h for h in protected if h == real or h.is_relative_to(real)]
        if exposed:
            raise UserError(f"the guest would need {path}, which is or holds {exposed[0]}: "
                            "a guest may not see a home or the lab's cache whole; install "
                            "the lab's Python in a directory of its own (a venv, pyenv)")
        chosen.append(path)
    return chosen


def export_root(vmdir: Path) -> Path:
    return vmdir / EXPORT_DIR


TMP_DIR = "tmp"  # virtme-run's TMPDIR, in the VM's directory
TMP_BYTES = 64 << 20  # its tmpfs in the namespace: the initramfs (a few MB) and the ret file


def wrap(argv: list[str], *, vmdir: Path, isolation: Isolation, modules: Path | None,
         staged: Path | None, cache: Path | None, max_file_bytes: int) -> list[str]:
    """``argv`` (virtme-run) started by the jail: in the tree when ``isolation`` has the
    file wall, else only with its limits (RLIMIT_FSIZE; TMPDIR the VM's own).

    virtme-run's TMPDIR holds its return-code file, a file the guest can write to without
    end (its virtme.ret port): in the namespace a tmpfs of TMP_BYTES, else the VM's
    directory under the file-size limit."""
    plan: dict[str, object] = {"walls": isolation.files, "tmpdir": str(vmdir / TMP_DIR),
                               "tmp_bytes": TMP_BYTES, "max_file_bytes": max_file_bytes}
    (vmdir / TMP_DIR).mkdir(exist_ok=True)
    if isolation.files:
        root = export_root(vmdir)
        root.mkdir(exist_ok=True)
        plan.update(root=str(root), binds=binds(vmdir, modules, staged, cache=cache))
    (vmdir / "jail.json").write_text(json.dumps(plan, indent=1) + "\n")
    return [sys.executable, "-I", "-S", str(JAIL), str(vmdir / "jail.json"), "--", *argv]
