"""The zygote on the host: an interpreter waiting for a verified agent's channel
(guest/zygote.py), the helper that hands the channel over (guest/handoff.c), and the
start command falling back to its own interpreter when no zygote takes it."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.paths import GUEST_DIR
from lab.vm.stage import archive, stage, start_command

PING = b'{"id": 1, "op": "agent.ping", "args": {}}\n'
EXIT = b'{"id": 2, "op": "agent.exit", "args": {}}\n'


@pytest.fixture
def zygote(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    sock = tmp_path / "z.sock"
    proc = subprocess.Popen([sys.executable, "-S", str(GUEST_DIR / "zygote.py"), str(sock)],
                            stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not sock.exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
        assert time.monotonic() < deadline, "the zygote never listened"
        time.sleep(0.02)
    yield proc, sock
    proc.kill()
    proc.wait()


def _start(tmp_path: Path, sock: Path, stdin: bytes,
           sent: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """The start command run by a local shell; ``sent``: what arrives instead of the archive."""
    staged = stage(tmp_path / "cache")
    data = archive(staged)
    command = start_command(str(tmp_path / "run" / "agent-x"), data, slowdown=3,
                            handoff=staged / "handoff", zygote=str(sock))
    return subprocess.run(["/bin/sh", "-c", command], input=(sent or data) + stdin,
                          capture_output=True, timeout=120, check=False)


def _lines(res: subprocess.CompletedProcess[bytes]) -> list[dict[str, object]]:
    return [json.loads(line) for line in res.stdout.decode().splitlines()]


def test_the_zygote_becomes_the_agent_of_the_verified_archive(
        tmp_path: Path, zygote: tuple[subprocess.Popen[bytes], Path]) -> None:
    proc, sock = zygote
    res = _start(tmp_path, sock, PING + EXIT)
    hello, pong, bye = _lines(res)
    assert hello["hello"]["zygote"] is True and hello["hello"]["pid"] == proc.pid  # type: ignore[index]
    assert pong["value"] == "pong" and bye["ok"] is True
    assert res.returncode == 0 and proc.wait(timeout=30) == 0
    assert not sock.exists()  # one agent per zygote


def test_the_agent_runs_the_pushed_copy_with_the_channels_environment(
        tmp_path: Path, zygote: tuple[subprocess.Popen[bytes], Path]) -> None:
    proc, sock = zygote
    staged = stage(tmp_path / "cache")
    data = archive(staged)
    remote = tmp_path / "run" / "agent-x"
    command = start_command(str(remote), data, zygote=str(sock), slowdown=3,
                            handoff=staged / "handoff")
    chan = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "LAB_TEST_MARK": "channel"})
    assert chan.stdin is not None and chan.stdout is not None
    chan.stdin.write(data)
    chan.stdin.flush()
    assert json.loads(chan.stdout.readline())["hello"]["pid"] == proc.pid
    # Its extension is the unpacked one, its directory the target, and its stderr the
    # target's agent.stderr.
    assert str(remote / "guest" / "_labsys") in Path(f"/proc/{proc.pid}/maps").read_text()
    assert os.readlink(f"/proc/{proc.pid}/cwd") == str(remote)
    assert os.readlink(f"/proc/{proc.pid}/fd/2") == str(remote / "agent.stderr")
    chan.stdin.write(EXIT)
    chan.stdin.close()
    assert chan.wait(timeout=30) == 0


def test_the_zygote_never_unpacks_an_archive_changed_on_the_way(
        tmp_path: Path, zygote: tuple[subprocess.Popen[bytes], Path]) -> None:
    proc, sock = zygote
    data = archive(stage(tmp_path / "cache"))
    changed = data[:1000] + bytes([data[1000] ^ 1]) + data[1001:]
    res = _start(tmp_path, sock, PING, sent=changed)
    assert res.returncode == 1 and proc.wait(timeout=30) == 1
    assert json.loads(res.stdout)["hello"]["error"] == "agent archive differs after push"
    assert b"agent.tar: FAILED" in res.stderr
    assert not (tmp_path / "run" / "agent-x" / "guest").exists()


def test_a_killed_agent_ends_the_channel_with_no_status(
        tmp_path: Path, zygote: tuple[subprocess.Popen[bytes], Path]) -> None:
    proc, sock = zygote
    staged = stage(tmp_path / "cache")
    data = archive(staged)
    command = start_command(str(tmp_path / "run" / "agent-x"), data, zygote=str(sock),
                            handoff=staged / "handoff")
    chan = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert chan.stdin is not None and chan.stdout is not None
    chan.stdin.write(data)
    chan.stdin.flush()
    assert json.loads(chan.stdout.readline())["hello"]["zygote"] is True
    proc.kill()
    assert chan.wait(timeout=30) == 101  # handoff: the agent ended without a status
    chan.stdin.close()


def test_without_a_zygote_the_channel_starts_its_own_interpreter(tmp_path: Path) -> None:
    res = _start(tmp_path, tmp_path / "no-zygote.sock", PING + EXIT)
    hello, pong, _ = _lines(res)
    assert hello["hello"]["zygote"] is False and pong["value"] == "pong"  # type: ignore[index]
    assert res.returncode == 0


def test_the_preload_covers_what_the_agents_start_imports() -> None:
    """After PRELOAD, the handoff and the agent's start up to its hello import no stdlib
    module: the zygote leaves none of that cost to the handoff."""
    code = (
        "import sys, zygote; zygote._preload(); before = set(sys.modules); "
        "sys.path.insert(0, sys.argv[1]); "
        "import hashlib, signal, time, array, guest.protocol, guest.native; "
        "print(' '.join(sorted(m for m in set(sys.modules) - before "
        "if not m.startswith(('guest', '_labsys', '_cffi_backend')))))"
    )
    out = subprocess.run([sys.executable, "-S", "-c", code, str(GUEST_DIR.parent)],
                         cwd=GUEST_DIR, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(GUEST_DIR)})
    assert out.stdout.split() == []


def _zygote_module() -> object:
    sys.path.insert(0, str(GUEST_DIR))
    try:
        import zygote  # guest/zygote.py, run as a script in the guest
    finally:
        sys.path.remove(str(GUEST_DIR))
    return zygote


def test_untar_unpacks_the_staged_archive_as_tar_does(tmp_path: Path) -> None:
    z: Any = _zygote_module()
    data = archive(stage(tmp_path / "cache"))
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(theirs, filter="data")
    cwd = os.getcwd()
    os.chdir(ours)
    try:
        z.untar(data)
    finally:
        os.chdir(cwd)
    files = sorted(p.relative_to(theirs) for p in theirs.rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(ours) for p in ours.rglob("*") if p.is_file())
    for rel in files:
        a, b = (theirs / rel).stat(), (ours / rel).stat()
        assert (theirs / rel).read_bytes() == (ours / rel).read_bytes()
        assert (a.st_mode, int(a.st_mtime)) == (b.st_mode, int(b.st_mtime)), rel


@pytest.mark.parametrize("member", ["link", "escape"])
def test_untar_refuses_what_the_lab_never_packs(tmp_path: Path, member: str) -> None:
    z: Any = _zygote_module()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("guest/x" if member == "link" else "../x")
        if member == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        else:
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(ValueError):
            z.untar(buf.getvalue())
    finally:
        os.chdir(cwd)
    assert not (tmp_path / "guest" / "x").exists() and not (tmp_path.parent / "x").exists()


def test_the_handoff_message_carries_the_channels_state() -> None:
    """What handoff.c sends, as the zygote reads it: three fds, then umask, directory,
    SHA-256, length, target and the environment (the agent's os.environ)."""
    z: Any = _zygote_module()
    a, b = socket.socketpair()
    r, w = os.pipe()
    try:
        fields = [b"0022", b"/home", b"ab" * 32, b"1413120", b"/run/x", b"PATH=/usr/bin",
                  b"KERNEL_LAB_SLOWDOWN=4", b"EMPTY=", b"."]
        socket.send_fds(a, [b"\0".join(fields) + b"\0"], [r, w, w])
        h = z._receive(b)
        assert (h.umask, h.cwd, h.digest, h.length, h.target) == \
            ("0022", "/home", "ab" * 32, 1413120, "/run/x")
        assert h.env == {"PATH": "/usr/bin", "KERNEL_LAB_SLOWDOWN": "4", "EMPTY": ""}
        assert len(h.fds) == 3
        for fd in h.fds:
            os.close(fd)
    finally:
        for s in (a, b):
            s.close()
        os.close(r)
        os.close(w)


def test_a_handoff_waits_for_a_zygote_still_starting(tmp_path: Path) -> None:
    """Not listening yet, but its pid (boot.sh's SOCKET.pid) alive: the handoff waits for
    it rather than start a second interpreter beside it."""
    sock = tmp_path / "z.sock"
    staged = stage(tmp_path / "cache")
    data = archive(staged)
    command = start_command(str(tmp_path / "run" / "agent-x"), data, zygote=str(sock),
                            handoff=staged / "handoff")
    with subprocess.Popen(["sleep", "30"]) as stand_in:
        (tmp_path / "z.sock.pid").write_text(f"{stand_in.pid}\n")
        chan = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert chan.stdin is not None and chan.stdout is not None
        # The archive waits in the pipe for the zygote: more than the pipe holds.
        push = threading.Thread(target=lambda: (chan.stdin.write(data), chan.stdin.flush()))
        push.start()
        time.sleep(1.0)  # the handoff is waiting now
        assert chan.poll() is None
        zyg = subprocess.Popen([sys.executable, "-S", str(GUEST_DIR / "zygote.py"), str(sock)],
                               stdin=subprocess.DEVNULL)
        try:
            hello = json.loads(chan.stdout.readline())["hello"]
            assert hello["zygote"] is True and hello["pid"] == zyg.pid
            assert not (tmp_path / "z.sock.pid").exists()  # taken: nobody waits for it now
            push.join(timeout=30)
            chan.stdin.write(EXIT)
            chan.stdin.close()
            assert chan.wait(timeout=30) == 0
        finally:
            zyg.kill()
            zyg.wait()
            stand_in.kill()


def test_a_handoff_message_cut_short_is_refused_and_its_fds_closed() -> None:
    """A message without handoff.c's end field (a send it gave up on, then fell back from)
    is never taken, and the zygote keeps none of the channel's fds open."""
    z: Any = _zygote_module()
    a, b = socket.socketpair()
    r, w = os.pipe()
    try:
        socket.send_fds(a, [b"0022\0/home\0" + b"ab" * 32 + b"\0" + b"14\0/run/x\0PATH=/x\0"],
                        [w, w, w])
        with pytest.raises(ValueError):
            z._receive(b)
        os.close(w)
        w = -1
        assert os.read(r, 1) == b""  # every copy of the write end is closed: EOF
    finally:
        for s in (a, b):
            s.close()
        os.close(r)
        if w >= 0:
            os.close(w)
