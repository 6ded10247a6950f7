"""The lab's SSH client against a real sshd on this host's loopback: both streams of a
command and of the agent's channel read as they come.

sshd is one of the lab's own Debian packages (the guest runs the host's); here it runs
as root on 127.0.0.1 with a key pair of the test's making, and the test's commands run
on the host.  A stream nobody reads fills the channel's window (2 MiB) and stalls the
other: a command would end in a timeout instead of its cap, the agent would look hung.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import proc
from lab.errors import InfraError
from lab.vm.agent import Agent, AgentError
from lab.vm.ssh import KeyPair, Ssh, free_port
from lab.vm.transport import STDERR_KEPT, SshTransport

SSHD = Path("/usr/sbin/sshd")
pytestmark = pytest.mark.skipif(not SSHD.exists() or os.geteuid() != 0,
                                reason="needs openssh-server and root (as the guest's sshd)")
FLOOD = "head -c 5000000 /dev/zero >&2"  # past the 2 MiB window


@pytest.fixture(scope="module")
def ssh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ssh]:
    with local_sshd(tmp_path_factory.mktemp("sshd")) as conn:
        yield conn


@contextlib.contextmanager
def local_sshd(tmp: Path) -> Iterator[Ssh]:
    """A root sshd on 127.0.0.1 with keys of its own, and the lab's client logged in."""
    host, client = KeyPair(), KeyPair()
    host.write_private(tmp / "host_key")
    (tmp / "authorized_keys").write_text(client.public_line())
    port = free_port()
    (tmp / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {tmp}/host_key\n"
        f"AuthorizedKeysFile {tmp}/authorized_keys\nPidFile none\nStrictModes no\n"
        "UsePAM no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege separation
    sshd = proc.spawn([str(SSHD), "-D", "-e", "-f", str(tmp / "sshd_config")],
                      log_path=tmp / "sshd.log")
    try:
        conn = Ssh.connect(port=port, client_key=client.pkey, host_key=host.public,
                           deadline=time.monotonic() + 20, alive=lambda: sshd.poll() is None,
                           log_path=tmp / "sshd.log")
        yield conn
        conn.close()
    finally:
        sshd.stop()


def test_a_command_flooding_its_stderr_still_ends(ssh: Ssh) -> None:
    t = time.monotonic()
    res = ssh.run(["sh", "-c", f"{FLOOD}; echo done"], timeout=20)
    assert (res.status, res.stdout, len(res.stderr)) == (0, "done\n", 5_000_000)
    assert time.monotonic() - t < 10


def test_a_command_past_its_stderr_cap_fails_at_once_saying_so(ssh: Ssh) -> None:
    t = time.monotonic()
    with pytest.raises(InfraError, match="wrote more than 1048576 bytes to its stderr"):
        ssh.start(["sh", "-c", f"{FLOOD}; sleep 60"], timeout=30).wait(cap=1 << 20)
    assert time.monotonic() - t < 10
    with pytest.raises(InfraError, match="wrote more than 1048576 bytes to its stdout"):
        ssh.start(["sh", "-c", "head -c 3000000 /dev/zero; sleep 60"],
                  timeout=30).wait(cap=1 << 20)


def test_the_agents_channel_reads_past_a_flood_on_its_stderr(ssh: Ssh) -> None:
    chan = ssh.channel(f"sh -c '{FLOOD}; echo last words >&2; echo done; exec cat'")
    transport = SshTransport(chan)
    got = b""
    deadline = time.monotonic() + 20
    while not got.endswith(b"done\n") and time.monotonic() < deadline:
        got += transport.recv(1.0) or b""
    assert got == b"done\n"
    # sshd reads the two streams apart: stderr's last line may come after stdout's.
    while not (err := transport.stderr_text()).endswith("words\n") and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    assert err.endswith("\0last words\n") and len(err) == STDERR_KEPT
    transport.send(b"ping\n")  # the channel still works both ways
    assert transport.recv(10.0) == b"ping\n"
    transport.close()


def test_a_dead_agent_says_what_it_wrote_to_stderr_escaped(ssh: Ssh) -> None:
    chan = ssh.channel("printf 'Traceback\\n\\033]0;pwned\\007boom\\n' >&2; exit 3")
    agent = Agent(SshTransport(chan), remote="-")
    with pytest.raises(AgentError) as exc:
        agent.handshake()
    assert "; its stderr ends: Traceback\n\\x1b]0;pwned\\x07boom" in str(exc.value)
    assert "\x1b" not in str(exc.value)
