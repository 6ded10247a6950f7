"""--keep-on-failure and `lab shell --attach`: the option's checks, which failures keep the
guest, and the attach socket's relay against a real sshd on this host's loopback (the
kept guest's SSH is such a connection; tests/test_ssh_local.py's sshd)."""

from __future__ import annotations

import os
import pty
import select
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import cli
from lab.errors import EXIT_USER_ERROR, UserError
from lab.kernel.artifact import Kernel
from lab.run import config
from lab.run.keep import verdict_kept
from lab.vm import attach
from lab.vm.session import kernel_args
from lab.vm.ssh import Ssh
from tests.test_ssh_local import SSHD, local_sshd


def test_keep_on_failure_is_a_run_switch_refused_with_many_workers_and_in_bisect(
        capsys: pytest.CaptureFixture[str]) -> None:
    run = config.from_args(cli._parser().parse_args(["run", "--keep-on-failure"]), "run")
    assert run.keep_on_failure is True
    assert config.pytest_options(run) == ["--lab-keep-on-failure"]
    assert config.lab_args(run) == ["--keep-on-failure"]
    assert config.from_args(cli._parser().parse_args(["run"]), "run").keep_on_failure is False
    with pytest.raises(UserError, match=r"^--keep-on-failure needs --workers 1, not 2 "):
        config.make({"keep_on_failure": True, "workers": 2})
    assert cli.main(["run", "--keep-on-failure", "--workers", "2"]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "--keep-on-failure needs --workers 1" in err and "Traceback" not in err
    with pytest.raises(SystemExit):  # a bisection's runs are unattended
        cli._parser().parse_args(["bisect", "--keep-on-failure"])
    assert "keep_on_failure" not in config.GUEST_COMMAND  # not `lab shell`'s nor `lab exec`'s


def test_a_kept_guest_outlives_a_panic() -> None:
    k = Kernel(spec="debian:7.2", release="7.2.13+deb14-amd64", image=Path("/k/vmlinuz"))
    assert "panic=0" in kernel_args(k, [], keep=True)
    assert "panic=0" not in kernel_args(k, [])
    assert kernel_args(k, [], keep=True, dump=True).count("panic=0") == 1


@pytest.mark.parametrize(("when", "outcome", "diagnosis", "kept"), [
    ("call", "failed", None, "FAIL"),
    ("teardown", "failed", None, "FAIL"),  # the window found a splat
    ("setup", "failed", None, None),  # ERROR: the test never ran
    ("call", "failed", "CRASH", "CRASH"),
    ("setup", "failed", "HANG", "HANG"),
    ("call", "failed", "INFRA", None),  # the machinery's, not the kernel's
    ("call", "passed", None, None),
])
def test_which_failures_keep_the_guest(when: str, outcome: str, diagnosis: str | None,
                                       kept: str | None) -> None:
    report = pytest.TestReport("t.py::test_a", ("t.py", 1, "test_a"), {}, outcome, None, when)
    assert verdict_kept(report, diagnosis) == kept


def test_a_run_directory_without_a_kept_guest_is_one_line_and_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["shell", "--attach", str(tmp_path), "--", "true"]) == EXIT_USER_ERROR
    assert cli.main(["shell", "--attach", str(tmp_path / "none"), "--", "true"]) == 2
    (tmp_path / attach.SOCKET).write_text("")  # left by a killed run: no one listens
    assert cli.main(["shell", "--attach", str(tmp_path), "--", "true"]) == EXIT_USER_ERROR
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all("no kept guest there" in line for line in err)
    assert cli.main(["shell", "--attach", str(tmp_path), "--kernel", "debian:6.1", "--",
                     "true"]) == EXIT_USER_ERROR
    assert "takes no run options" in capsys.readouterr().err


needs_sshd = pytest.mark.skipif(not SSHD.exists() or os.geteuid() != 0,
                                reason="needs openssh-server and root (as the guest's sshd)")


@pytest.fixture(scope="module")
def ssh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ssh]:
    with local_sshd(tmp_path_factory.mktemp("sshd")) as conn:
        yield conn


def _door(run_dir: Path, ssh: Ssh) -> attach.Door:
    transport = ssh.client.get_transport()
    assert transport is not None
    return attach.Door(run_dir, transport)


def _session(run_dir: Path, header: dict[str, object], stdin: bytes | None
             ) -> tuple[int, bytes, bytes]:
    out: list[bytes] = []
    err: list[bytes] = []
    fd = None
    if stdin is not None:
        fd, w = os.pipe()

        def feed() -> None:  # past the pipe's buffer: written while the relay reads
            os.write(w, stdin)
            os.close(w)

        threading.Thread(target=feed, daemon=True).start()
    try:
        with attach.connect(run_dir, header) as sock:
            status = attach.relay(sock, stdin_fd=fd, out=out.append, err=err.append)
    finally:
        if fd is not None:
            os.close(fd)
    return status, b"".join(out), b"".join(err)


@needs_sshd
def test_a_command_through_the_door_gets_both_streams_stdin_and_its_status(
        tmp_path: Path, ssh: Ssh) -> None:
    door = _door(tmp_path, ssh)
    try:
        sock_path = tmp_path / attach.SOCKET
        assert stat.S_IMODE(sock_path.stat().st_mode) == 0o600
        assert stat.S_ISSOCK(sock_path.stat().st_mode)
        got = _session(tmp_path, {"argv": ["sh", "-c", "echo out; echo err >&2; exit 3"]},
                       None)
        assert got == (3, b"out\n", b"err\n")
        big = os.urandom(200_000)  # past a frame and a channel window's first piece
        status, out, _ = _session(tmp_path, {"argv": ["cat"]}, big)
        assert (status, out) == (0, big)
        # Two at once: each connection its own channel.
        results: list[tuple[int, bytes, bytes]] = []
        threads = [threading.Thread(target=lambda n=n: results.append(_session(
            tmp_path, {"argv": ["sh", "-c", f"sleep 1; echo {n}"]}, None)))
            for n in range(2)]
        t = time.monotonic()
        for th in threads:
            th.start()
        for th in threads:
            th.join(20)
        assert sorted(results) == [(0, b"0\n", b""), (0, b"1\n", b"")]
        assert time.monotonic() - t < 10
    finally:
        door.close()
    assert not (tmp_path / attach.SOCKET).exists()
    with pytest.raises(UserError, match="no kept guest there"):
        attach.connect(tmp_path, {"argv": ["true"]})


@needs_sshd
def test_a_pty_through_the_door_is_a_terminal_of_the_size_asked(tmp_path: Path,
                                                                    ssh: Ssh) -> None:
    door = _door(tmp_path, ssh)
    try:
        with attach.connect(tmp_path, {"pty": True, "term": "xterm", "cols": 91,
                                       "rows": 33}) as sock:
            sock.sendall(attach.frame(b"i", b"stty size; tty; exit 5\n"))
            out: list[bytes] = []
            status = attach.relay(sock, stdin_fd=None, out=out.append, err=out.append)
        text = b"".join(out).decode(errors="replace")
        assert status == 5
        assert "33 91" in text and "/dev/pts/" in text
    finally:
        door.close()


@needs_sshd
def test_a_run_directory_too_deep_for_a_socket_names_a_short_one(tmp_path: Path,
                                                                 ssh: Ssh) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    door = _door(deep, ssh)
    try:
        elsewhere = Path((deep / attach.ELSEWHERE).read_text().strip())
        assert len(str(elsewhere)) < attach.UNIX_PATH_MAX and elsewhere.is_socket()
        assert _session(deep, {"argv": ["echo", "deep"]}, None) == (0, b"deep\n", b"")
    finally:
        door.close()
    assert not (deep / attach.ELSEWHERE).exists() and not elsewhere.exists()


@needs_sshd
def test_a_bad_header_ends_that_connection_only(tmp_path: Path, ssh: Ssh) -> None:
    door = _door(tmp_path, ssh)
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(tmp_path / attach.SOCKET))
            s.sendall(b'{"argv": []}\n')
            s.settimeout(10)
            assert s.recv(10) == b""  # closed, nothing opened
        assert _session(tmp_path, {"argv": ["echo", "ok"]}, None) == (0, b"ok\n", b"")
    finally:
        door.close()


@needs_sshd
def test_lab_shell_attach_on_a_terminal_is_an_interactive_shell(tmp_path: Path,
                                                                 ssh: Ssh) -> None:
    """`lab shell --attach RUN_DIR` on a real pseudo-terminal: a shell, its exit status."""
    door = _door(tmp_path, ssh)
    try:
        pid, fd = pty.fork()
        if pid == 0:  # the child: lab on the pseudo-terminal
            os.execv(sys.executable, [sys.executable, "-m", "lab.cli", "shell", "--attach",
                                      str(tmp_path)])
        got = b""
        typed = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not typed and got.rstrip().endswith(b"#"):
                # At the prompt: raw mode (which flushes typeahead) is on by then.
                os.write(fd, b"echo $((6*7))x; exit 4\n")
                typed = True
            ready, _, _ = select.select([fd], [], [], 1.0)
            if ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                got += data
        done, status = os.waitpid(pid, os.WNOHANG)
        while done == 0 and time.monotonic() < deadline + 10:
            time.sleep(0.1)
            done, status = os.waitpid(pid, os.WNOHANG)
        if done == 0:  # still running: never a hung test
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
        os.close(fd)
        assert os.waitstatus_to_exitcode(status) == 4, got
        assert b"42x" in got
    finally:
        door.close()
