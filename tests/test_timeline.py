"""The boot timeline on console lines: events, the guest clock placed on the host's, slices."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from lab.vm.timeline import Timeline


def test_console_events_guest_events_and_slices() -> None:
    tl = Timeline()
    tl.mark("qemu")
    tl.on_console(b"[    0.000000] Linux version 7.2.13+deb14-amd64 (debian-kernel@...)\n")
    tl.on_console(b"[    0.000000] Linux version again: only the first counts\n")
    tl.on_console(b"no timestamp: ignored\n")
    time.sleep(0.05)
    tl.on_console(b"[    0.040000] Run /init as init process\n")
    tl.on_console(b"[    0.045000] kernel-lab: guest ready (7.2.13)\n")
    tl.mark("ssh")
    # Guest-only events (the agent's clock), placed with the console's clock offset.
    tl.mark("python", guest_s=0.3, host=False)
    tl.mark("hello")
    names = [e.name for e in tl.events()]
    assert names[:4] == ["qemu", "kernel", "init", "sshd"]
    assert set(names) == {"qemu", "kernel", "init", "sshd", "ssh", "python", "hello"}
    by_name = {e.name: e for e in tl.events()}
    assert by_name["python"].guest_s == 0.3 and by_name["python"].host_s is not None
    # The offset is the smallest console delay: the kernel line arrived right away.
    assert abs((by_name["python"].host_s - by_name["kernel"].host_s) - 0.3) < 0.05
    slices = tl.slices()
    assert len(slices) == len(names) - 1 and slices[0][0] == "qemu -> kernel"
    assert tl.largest(1)[0][1] == max(s for _, s in slices)
    lines = tl.to_lines("vm1")
    assert lines[0]["vm"] == "vm1" and {"event", "host_s", "guest_s"} <= set(lines[0])


def test_the_agents_monotonic_clock_is_placed_by_its_own_log_line() -> None:
    """CLOCK_MONOTONIC and printk's clock differ in the guest; the agent logs its
    monotonic time, and its events are placed by that line, not as if they were printk's."""
    tl = Timeline()
    tl.on_console(b"[    0.000000] Linux version 7.2.13\n")
    time.sleep(0.2)
    # The agent said monotonic 0.1 when printk said 0.2: monotonic runs 0.1 s behind.
    tl.on_console(b"[    0.200000] kernel-lab: agent clock 0.100000\n")
    tl.mark_guest("python", 0.05)
    by_name = {e.name: e for e in tl.events()}
    python, kernel = by_name["python"], by_name["kernel"]
    assert python.guest_s is not None and abs(python.guest_s - 0.15) < 1e-9
    assert python.host_s is not None and kernel.host_s is not None
    assert abs((python.host_s - kernel.host_s) - 0.15) < 0.05  # not 0.05: the clocks differ


def test_sshds_lines_are_host_timed_events() -> None:
    tl = Timeline()
    assert not tl.seen("sshd listening")
    tl.on_console(b"Server listening on 0.0.0.0 port 22.\n")
    tl.on_console(b"Accepted publickey for root from 10.0.2.2 port 5 ssh2: ED25519 SHA256:x\n")
    assert tl.seen("sshd listening") and tl.seen("sshd accepted key")
    assert [e.name for e in tl.events()] == ["sshd listening", "sshd accepted key"]


def test_a_boot_the_guest_gave_up_on_ends_the_wait_for_ssh_with_its_reason(
        tmp_path: Path) -> None:
    """guest/boot.sh says "boot failed: ..." when its network never comes up: the lab stops
    waiting at once and says what the guest said, not "no SSH before the boot timeout"."""
    from lab.errors import InfraError
    from lab.vm.ssh import KeyPair, Ssh, free_port

    tl = Timeline()
    tl.on_console(b"[   31.5] kernel-lab: boot failed: no virtio_net interface came up in 10 s "
                  b"(interfaces: lo ); SSH will not be reachable\n")
    assert tl.seen("boot failed")
    assert tl.failure is not None and tl.failure.startswith("no virtio_net interface")
    started = time.monotonic()
    with pytest.raises(InfraError, match="the guest gave up booting: no virtio_net") as exc:
        Ssh.connect(port=free_port(), client_key=KeyPair().pkey,
                    host_key=KeyPair().public, deadline=started + 60,
                    log_path=tmp_path / "console.log", failed=lambda: tl.failure)
    assert time.monotonic() - started < 5
    assert exc.value.phase == "boot"


def test_a_boots_progress_line_names_its_milestones() -> None:
    """What the user sees when a guest is up: its time to the agent and the milestones on
    the way (seconds since QEMU started), not the 18 events of the timeline."""
    tl = Timeline()
    tl.mark("qemu")
    tl.on_console(b"[    0.000000] Linux version 7.2.13+deb14-amd64\n")
    tl.on_console(b"[    0.040000] Run /init as init process\n")
    tl.on_console(b"[    0.050000] virtme-ng-init: mount devtmpfs\n")
    tl.on_console(b"[    0.060000] kernel-lab: boot.sh started\n")
    tl.on_console(b"[    0.070000] kernel-lab: network up\n")
    tl.mark("ssh")
    tl.mark("hello")
    line = tl.progress_line()
    names = [name for name, _ in tl.milestones()]
    assert names == ["kernel", "init", "boot.sh", "network", "ssh", "agent"]
    assert re.fullmatch(r"guest up in \d+\.\d s \(" + ", ".join(
        rf"{re.escape(n)} \d+\.\d s" for n in names) + r"\)", line), line
    hello = tl.milestones()[-1][1]
    assert line.startswith(f"guest up in {hello:.1f} s (kernel ")
