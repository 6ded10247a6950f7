"""Packaging the guest agent: stage it once per source hash, push it, the command that starts it.

The agent (``guest/``) is staged once per source hash into the cache, with
its cffi extension compiled on the host (the guest runs the host's Python
from the read-only 9p root, so the same build loads there and costs no
compile time under TCG).  It is pushed over SSH, on the stdin of the exec channel
that becomes the agent, into a tmpfs in the guest, and verified there by the
archive's SHA-256 (given on that channel's command line) before it is unpacked
(guest/zygote.py ``unpack``, whichever interpreter takes the channel).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import sys
import tarfile
from pathlib import Path

import paramiko

from lab import atomic, proc
from lab.errors import InfraError
from lab.paths import GUEST_DIR, REPO

GUEST_SRC = GUEST_DIR
REMOTE_BASE = "/run/kernel-lab"  # a tmpfs mounted by guest/boot.sh
ZYGOTE_SOCKET = f"{REMOTE_BASE}/zygote.sock"  # where guest/zygote.py waits (boot.sh)
HANDOFF_NOT_TAKEN = 100  # guest/handoff.c: no zygote took it; start the interpreter
STAGE_FORMAT = "3: with bytecode and handoff"  # what a staged archive holds, beside the sources


def staged_root(cache: Path) -> Path:
    """Where staged agents live (one directory per source hash); the guest runs ``handoff``
    from there, so the guest's tree of the host holds it (lab.vm.sandbox)."""
    return cache / "agent"


def _source_files() -> list[Path]:
    return sorted(
        p for p in GUEST_SRC.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".so"
    )


def source_hash() -> str:
    """Identity of the agent build: its sources and the interpreter that runs it."""
    h = hashlib.sha256()
    h.update(sys.version.encode())
    h.update(STAGE_FORMAT.encode())
    for path in _source_files():
        h.update(str(path.relative_to(GUEST_SRC)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def stage(cache: Path) -> Path:
    """The staged agent (``agent.tar``, its ``MANIFEST`` and ``handoff``), cached by source
    hash.

    The archive holds ``guest/`` with its bytecode, the built extension and a copy of cffi's
    ``_cffi_backend``, so the guest's Python can start with ``-S``: no site
    processing, whose .pth files (editable installs) cost seconds under TCG.
    """
    final = staged_root(cache) / source_hash()
    if (final / "MANIFEST").exists():
        return final
    with atomic.temp_dir(final.parent) as tmp:
        tree = tmp / "tree"
        pkg = tree / "guest"
        for path in _source_files():
            dest = pkg / path.relative_to(GUEST_SRC)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
        # Bytecode compiled here, by the interpreter the guest runs: the guest unpacks a
        # fresh copy every boot and would otherwise compile every module under TCG.
        # copy2 kept the mtimes the .pyc files are checked against (tar keeps them too).
        proc.run([sys.executable, "-m", "compileall", "-q", str(pkg)], phase="agent build",
                 log_path=staged_root(cache) / "build.log", timeout=300)
        build = tmp / "build"
        proc.run(
            [sys.executable, "-m", "guest.build_ffi", "--out", str(build)],
            phase="agent build",
            log_path=staged_root(cache) / "build.log",
            cwd=REPO,
            timeout=300,
        )
        built = list(build.glob("_labsys*.so"))
        if not built:
            raise InfraError("the cffi build produced no _labsys extension",
                             phase="agent build", log=staged_root(cache) / "build.log")
        for so in built:
            shutil.copy2(so, pkg / so.name)
        # The helper that hands the channel to the zygote (guest/zygote.py).  It runs
        # before the archive is unpacked, so it is not in it: the guest runs it from here,
        # over 9p, as it runs the zygote and boot.sh from the checkout.
        proc.run([os.environ.get("CC", "cc"), "-O2", "-Wall", "-Werror", "-o",
                  str(tmp / "handoff"), str(GUEST_SRC / "handoff.c")],
                 phase="agent build", log_path=staged_root(cache) / "build.log", timeout=120)
        import _cffi_backend  # the runtime half of cffi, needed by the extension

        shutil.copy2(str(_cffi_backend.__file__), tree / Path(str(_cffi_backend.__file__)).name)
        files = sorted(p for p in tree.rglob("*") if p.is_file())
        manifest = "".join(
            f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(tree)}\n"
            for p in files
        )
        # Plain ustar, regular files only: guest/zygote.py unpacks it with a reader of
        # its own (tarfile's import and extraction cost a second under TCG).
        with tarfile.open(tmp / "agent.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
            for p in files:
                tar.add(p, arcname=str(p.relative_to(tree)))
        (tmp / "MANIFEST").write_text(manifest)
        shutil.rmtree(tree)
        shutil.rmtree(build)
        atomic.publish(tmp, final)  # another worker may have published it first
    return final


def remote_dir(staged: Path) -> str:
    """Where the agent of ``staged`` is unpacked in the guest."""
    return f"{REMOTE_BASE}/agent-{staged.name}"


def archive(staged: Path) -> bytes:
    return (staged / "agent.tar").read_bytes()


def push(chan: paramiko.Channel, data: bytes) -> None:
    """Send the archive to the channel ``start_command`` runs, whose stdin it reads first."""
    try:
        chan.sendall(data)
    except (OSError, EOFError, paramiko.SSHException) as exc:
        raise InfraError(f"pushing the agent failed: {exc}", phase="agent") from None


def start_command(remote: str, data: bytes, *, handoff: Path, slowdown: float = 1.0,
                  zygote: str = ZYGOTE_SOCKET) -> str:
    """Receive the archive on stdin, verify it, unpack it, then become the agent.

    First ``handoff`` offers the channel, the archive still unread, to the zygote the
    guest started while it booted (guest/zygote.py), which verifies, unpacks and
    becomes the agent with no exec of its own.  When no zygote takes it (exit 100, or
    127: no helper), the channel starts an interpreter on the same file in its
    ``--unpack`` mode, which runs the same check and unpack (``guest.zygote.unpack``,
    the one place that does either) and then the agent.

    One exec does it all, so pushing costs one channel and no round trip of its own:
    the archive is the first ``len(data)`` bytes of the channel's stdin (the lab sends
    nothing else before the hello), checked against its SHA-256, on the command line,
    before anything in it is unpacked.  A mismatch ends the channel with a hello that
    says so and the complaint on stderr.  ``slowdown`` scales the agent's own fixed waits
    (TCG is slower).  ``zygote``: the socket guest/zygote.py listens on.
    """
    digest = hashlib.sha256(data).hexdigest()
    return (
        f"export KERNEL_LAB_SLOWDOWN={slowdown:g}; "
        f"{shlex.quote(str(handoff))} {zygote} {digest} {len(data)} {remote}; rc=$?; "
        f"[ $rc -eq {HANDOFF_NOT_TAKEN} ] || [ $rc -eq 127 ] || exit $rc; "
        f"exec {shlex.join(unpack_argv(remote, data))}"
    )


def unpack_argv(remote: str, data: bytes) -> list[str]:
    """The interpreter that reads ``data`` on its stdin, checks and unpacks it into
    ``remote`` (``guest.zygote.unpack``) and becomes the agent: the guest's fallback when no
    zygote takes the channel, and the whole start of an agent on the host's kernel.

    The guest sees the host's root: this interpreter and this zygote.py (read there over
    9p, as boot.sh reads it) are the ones the guest runs."""
    return [sys.executable, "-S", str(GUEST_SRC / "zygote.py"), "--unpack",
            hashlib.sha256(data).hexdigest(), str(len(data)), remote]
