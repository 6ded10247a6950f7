"""lab.vm.qmp against a real QEMU: a machine with no kernel, never started (-S), 64 MiB.

Cheap (well under a second of QEMU) and real: the handshake, pause and resume, the dump
formats this QEMU has, a dump in each the lab offers, a dump QEMU refuses, a QEMU gone.
"""

from __future__ import annotations

import resource
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.vm.qmp import Qmp, QmpError, fits, socket_path

QEMU = shutil.which("qemu-system-x86_64")
pytestmark = pytest.mark.skipif(QEMU is None, reason="needs qemu-system-x86_64")


def _limited(max_file_bytes: int | None) -> None:
    """The jail's file-size limit (lab.vm.jail), SIGXFSZ ignored as there."""
    if max_file_bytes is not None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))


@pytest.fixture
def qemu(request: pytest.FixtureRequest) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    limit = getattr(request, "param", None)
    # A short directory: pytest's tmp_path can pass a socket address's 107 bytes.
    with tempfile.TemporaryDirectory(prefix="qmp-") as d:
        sock = Path(d) / "qmp.sock"
        assert QEMU is not None
        proc = subprocess.Popen([QEMU, "-S", "-nodefaults", "-display", "none", "-machine",
                                 "q35", "-m", "64", "-accel", "tcg",
                                 "-qmp", f"unix:{sock},server=on,wait=off"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                preexec_fn=lambda: _limited(limit))
        try:
            deadline = time.monotonic() + 30
            while not sock.exists():
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "QEMU made no QMP socket"
                time.sleep(0.05)
            yield proc, sock
        finally:
            proc.kill()
            proc.wait()


def test_status_stop_cont(qemu: tuple[subprocess.Popen[bytes], Path]) -> None:
    _, sock = qemu
    with Qmp(sock) as q:
        assert q.status() == "prelaunch"
        q.cont()
        assert q.status() == "running"
        q.stop()
        assert q.status() == "paused"
        assert [e["event"] for e in q.events] == ["RESUME", "STOP"]


def test_dump_each_format(qemu: tuple[subprocess.Popen[bytes], Path], tmp_path: Path) -> None:
    _, sock = qemu
    with Qmp(sock) as q:
        assert {"elf", "kdump-zlib"} <= set(q.formats())
        elf = q.dump(tmp_path / "core.elf", "elf")
        kdump = q.dump(tmp_path / "core.kdump", "kdump-zlib")
    assert (tmp_path / "core.elf").read_bytes()[:4] == b"\x7fELF"
    assert elf >= 64 << 20  # every byte of the guest's memory
    # QEMU 7.2 writes kdump-compressed "flattened" (makedumpfile's stream format).
    assert (tmp_path / "core.kdump").read_bytes()[:16].startswith(b"makedumpfile")
    assert kdump < elf // 10  # the zero pages left out, the rest compressed
    assert (tmp_path / "core.kdump").stat().st_mode & 0o777 == 0o600


def test_refused_command_and_unopenable_path(
        qemu: tuple[subprocess.Popen[bytes], Path], tmp_path: Path) -> None:
    _, sock = qemu
    with Qmp(sock) as q:
        with pytest.raises(QmpError, match="refused no-such-command"):
            q.command("no-such-command")
        with pytest.raises(ValueError, match="dump format"):
            q.dump(tmp_path / "x", "raw")
        assert q.status() == "prelaunch"  # the connection is still in step
    unwritable = tmp_path / "no-such-dir" / "core"
    with pytest.raises(OSError), Qmp(sock) as q:
        q.dump(unwritable, "elf")
    assert not unwritable.exists()


@pytest.mark.parametrize("qemu", [8 << 20], indirect=True)
def test_dump_past_the_file_size_limit_fails_and_leaves_no_file(
        qemu: tuple[subprocess.Popen[bytes], Path], tmp_path: Path) -> None:
    # The jail's RLIMIT_FSIZE (lab.vm.vm._max_file_bytes) below the guest's 64 MiB: the
    # ELF dump fails (EFBIG) and says so, and QEMU lives on.
    _, sock = qemu
    with Qmp(sock) as q:
        assert q.dump(tmp_path / "core.kdump", "kdump-zlib") < 8 << 20  # zero pages: tiny
        with pytest.raises(QmpError, match="File too large"):
            q.dump(tmp_path / "core.elf", "elf")
        assert not (tmp_path / "core.elf").exists()
        assert q.status() == "prelaunch"


def test_qemu_gone(qemu: tuple[subprocess.Popen[bytes], Path]) -> None:
    proc, sock = qemu
    q = Qmp(sock)
    proc.kill()
    proc.wait()
    with pytest.raises(QmpError, match=r"closed its QMP socket|failed|cannot send"):
        q.status()
    q.close()
    with pytest.raises(QmpError, match="cannot reach"):
        Qmp(sock)


def test_socket_path_fits_or_not(tmp_path: Path) -> None:
    assert socket_path(tmp_path) == tmp_path / "qmp.sock"
    assert fits(Path("/tmp/x/qmp.sock"))
    assert not fits(Path("/" + "d" * 100) / "qmp.sock")


def test_a_kdump_is_made_plain_with_a_kernels_utsname(
        qemu: tuple[subprocess.Popen[bytes], Path], tmp_path: Path) -> None:
    # What drgn's libkdumpfile needs of QEMU 7.2's kdump (lab.vm.vmcore): the plain form,
    # and a utsname that looks like a kernel's (tests/test_dump_real.py reads one).
    from lab.vm import vmcore

    _, sock = qemu
    core = tmp_path / "core.kdump"
    with Qmp(sock) as q:
        q.dump(core, "kdump-zlib")
    flat = core.read_bytes()
    vmcore.finish(core, release="7.2.13+deb14-amd64")
    plain = core.read_bytes()
    assert flat.startswith(b"makedumpfile") and plain.startswith(b"KDUMP   ")
    uts = [plain[12 + i * 65:12 + (i + 1) * 65].rstrip(b"\0") for i in range(5)]
    assert uts == [b"Linux", b"kernel-lab", b"7.2.13+deb14-amd64",
                   b"unknown (QEMU writes none)", b"x86_64"]
    assert vmcore.vmcoreinfo(core) == {}  # a machine that ran no kernel wrote none
    assert core.stat().st_mode & 0o777 == 0o600
    with pytest.raises(vmcore.VmcoreError, match="not a flattened dump"):
        vmcore.finish(core, release="x")  # and it is left as it was
    assert core.read_bytes() == plain
    core.write_bytes(flat[:len(flat) // 2])
    with pytest.raises(vmcore.VmcoreError, match="truncated"):
        vmcore.finish(core, release="x")
    assert not (tmp_path / "core.kdump.plain").exists()
