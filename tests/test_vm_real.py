"""The VM's own machinery on a real boot: a forwarded port another process took first."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from lab.kernel.resolve import resolve_kernel
from lab.paths import cache_root
from lab.vm import vm as vm_mod
from lab.vm.vmconfig import DEFAULT_KERNEL_ARGS, VmConfig

pytestmark = [pytest.mark.vm, pytest.mark.network]

# These boot a bare Vm, without the Machine (lab.vm.session) that boots a guest again
# single-threaded after the text-patching oops multi-threaded TCG gives now and then
# (int3 in early boot, seen once in ~40 boots: FACTS.md).  What they check does not
# depend on the vCPUs' threads, so they boot single-threaded from the start.
CFG = VmConfig(accel="tcg-single")


def test_a_port_taken_before_qemu_binds_it_is_retried(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    kernel = resolve_kernel("debian:7.2", cache=cache_root())
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        handed = iter([taken])  # the first "free" port is taken by the time QEMU binds it
        real = vm_mod.free_port
        monkeypatch.setattr(vm_mod, "free_port", lambda: next(handed, None) or real())
        with vm_mod.Vm(kernel, run_dir=tmp_path, cache=cache_root(), config=CFG,
                       name="retry") as vm:
            assert vm.port != taken
            assert vm.ssh is not None and vm.ssh.run(["true"]).status == 0
    console = (tmp_path / "console-retry.log").read_text(errors="replace")
    assert "Could not set up host forwarding rule" in console  # QEMU refused the first


def test_the_boot_binds_the_cached_host_root_and_the_zygote_becomes_the_agent(
        tmp_path: Path) -> None:
    """What the boot's speed rests on, seen in a real guest: the host root's second, cached
    9p export bound over the directories of lab.vm.hostroot; the init's PATH with the
    no-op tmpfiles; the agent started by the zygote from the pushed archive; a second
    agent in the same guest started all the same; a third that no zygote takes."""
    from lab.vm.agent import Agent
    from lab.vm.hostroot import TAG, fast_dirs
    from lab.vm.stage import archive, push, remote_dir, stage, start_command
    from lab.vm.transport import SshTransport

    cache = cache_root()
    kernel = resolve_kernel("debian:7.2", cache=cache)
    with vm_mod.Vm(kernel, run_dir=tmp_path, cache=cache, config=CFG, name="fast") as vm:
        assert vm.ssh is not None
        first = Agent.start(vm.ssh, cache=cache, slowdown=vm.cfg.slowdown, timeline=vm.timeline)
        assert first.hello["zygote"] is True
        assert first.call("agent.ping") == "pong"
        first.close()
        mounts = vm.ssh.run(["cat", "/proc/self/mountinfo"]).stdout
        loose = [line for line in mounts.splitlines() if f" {TAG} " in line]
        assert loose and all("cache=" in line or "loose" in line for line in loose), loose
        targets = {line.split()[4] for line in loose}
        assert set(fast_dirs(kernel.modules)) <= targets, targets
        # The init had the VM's no-op systemd-tmpfiles first on its PATH (lab.vm.vm.NOOPS),
        # and the guest resolves it to the host's `true`.
        environ = vm.ssh.run(["cat", "/proc/1/environ"]).stdout.split("\0")
        init_path = f"{vm.vmdir / vm_mod.NOOP_DIR}:{vm_mod.INIT_PATH_TAIL}"
        assert f"PATH={init_path}" in environ, environ
        found = vm.ssh.run(["sh", "-c", f"PATH={init_path}; p=$(command -v systemd-tmpfiles) "
                            "&& echo \"$p\" && readlink -f \"$p\" && \"$p\" --create --boot"])
        assert found.status == 0, found
        noop, target = found.stdout.split()
        assert noop == str(vm.vmdir / vm_mod.NOOP_DIR / "systemd-tmpfiles"), found
        assert target.endswith("/true"), found
        second = Agent.start(vm.ssh, cache=cache, slowdown=vm.cfg.slowdown)
        assert second.call("agent.ping") == "pong"
        second.close()
        # No zygote takes the channel: the guest's interpreter runs guest.zygote.unpack
        # itself (`zygote.py --unpack`, read from the host root), the one path that checks
        # and unpacks the archive, then becomes the agent.
        staged = stage(cache)
        data = archive(staged)
        chan = vm.ssh.channel(start_command(f"{remote_dir(staged)}-direct", data,
                                            handoff=staged / "handoff", zygote="/nonexistent",
                                            slowdown=vm.cfg.slowdown))
        push(chan, data)
        direct = Agent(SshTransport(chan), remote=f"{remote_dir(staged)}-direct")
        direct.handshake()
        assert direct.hello["zygote"] is False and direct.call("agent.ping") == "pong"
        direct.close()
    names = [e.name for e in vm.timeline.events()]
    for event in ("host root", "sshd listening", "network", "python", "hello"):
        assert event in names, names


HOST_UDEVD = ("/usr/lib/systemd/systemd-udevd", "/lib/systemd/systemd-udevd")


def _host_has_udevd() -> None:
    """Users' hosts have udev (every systemd host), so the test session installs it
    (noxfile.py TEST_PACKAGES); a host without it cannot show what these tests check."""
    import os

    assert any(os.path.exists(p) for p in HOST_UDEVD), (
        "this host has no systemd-udevd: the test session installs `udev` (noxfile.py), "
        "because users' hosts have it")


def _guest_net(vm: vm_mod.Vm) -> tuple[str, set[tuple[str, str]]]:
    """(the virtio_net interface's name, every (interface, IPv4 address)) in the guest."""
    assert vm.ssh is not None
    script = ("for n in /sys/bus/virtio/drivers/virtio_net/virtio*/net/*; do echo ${n##*/}; "
              "done; ip -4 -o addr show")
    out = vm.ssh.run(["/bin/sh", "-c", script]).stdout.splitlines()
    # "2: eth0    inet 10.0.2.15/24 brd 10.0.2.255 scope global eth0 ..."
    return out[0], {(f[1], f[3]) for f in (line.split() for line in out[1:])}


def test_on_a_host_with_udev_the_guest_stops_the_hosts_udevd_and_its_network_comes_up(
        tmp_path: Path) -> None:
    """virtme-ng-init starts the host's udevd in the guest; the lab's boot needs none of
    it: no coldplug, udevd stopped before the drivers load, the NIC found by driver."""
    _host_has_udevd()
    cache = cache_root()
    kernel = resolve_kernel("debian:7.2", cache=cache)
    with vm_mod.Vm(kernel, run_dir=tmp_path, cache=cache, config=CFG, name="udev") as vm:
        nic, addrs = _guest_net(vm)
        assert (nic, "10.0.2.15/24") in addrs, addrs
        assert vm.ssh is not None
        # What still runs (an exited udevd stays a zombie: the init reaps nothing).
        script = ("for d in /proc/[0-9]*; do read -r c < $d/comm && "
                  "s=$(grep ^State: $d/status) && echo \"$c $s\"; done 2>/dev/null")
        running = [line for line in vm.ssh.run(["/bin/sh", "-c", script]).stdout.splitlines()
                   if "(zombie)" not in line]
        assert running and not [line for line in running if "udev" in line], running
    console = (tmp_path / "console-udev.log").read_text(errors="replace")
    assert "Starting systemd-udevd" in console  # the init did start the host's udevd
    assert "kernel-lab: stopped the host's udevd" in console
    assert f"kernel-lab: network up on {nic}" in console


def test_an_interface_udev_renamed_is_found_by_its_driver(tmp_path: Path) -> None:
    """The renaming that made every test INFRA on hosts with udev ("enp0s9: renamed from
    eth0"), done for real: udevd kept (a seam of boot.sh), the kernel's names not asked
    for.  The guest's network still comes up, on the renamed interface."""
    _host_has_udevd()
    cache = cache_root()
    kernel = resolve_kernel("debian:7.2", cache=cache)
    args = tuple(a for a in DEFAULT_KERNEL_ARGS if not a.startswith("net.ifnames"))
    cfg = VmConfig(accel="tcg-single", kernel_args=(*args, "kernel_lab.keep_udev"))
    with vm_mod.Vm(kernel, run_dir=tmp_path, cache=cache, config=cfg, name="renamed") as vm:
        nic, addrs = _guest_net(vm)
        assert nic != "eth0"
        assert (nic, "10.0.2.15/24") in addrs, addrs
    console = (tmp_path / "console-renamed.log").read_text(errors="replace")
    assert f"{nic}: renamed from eth0" in console
    assert f"kernel-lab: network up on {nic}" in console


def test_a_guest_whose_network_never_comes_up_says_so_and_the_wait_ends(tmp_path: Path) -> None:
    """No NIC driver (the kernel refuses it: module_blacklist= on its command line):
    guest/boot.sh gives up after its 10 s and says why on the console, and the lab stops
    waiting at once with that line, not at the boot timeout with "no SSH"."""
    import time

    from lab.errors import InfraError

    cache = cache_root()
    kernel = resolve_kernel("debian:7.2", cache=cache)
    cfg = VmConfig(accel="tcg-single", boot_timeout=600,
                          kernel_args=(*DEFAULT_KERNEL_ARGS,
                                       "module_blacklist=virtio_net"))
    started = time.monotonic()
    vm = vm_mod.Vm(kernel, run_dir=tmp_path, cache=cache, config=cfg, name="nonet")
    try:
        with pytest.raises(InfraError) as exc:
            vm.start()
    finally:
        vm.stop()
    took = time.monotonic() - started
    msg = str(exc.value)
    assert msg.startswith("boot: the guest gave up booting: no virtio_net interface"), msg
    assert "console-nonet.log" in msg
    assert took < 300, took  # the boot timeout was 600 s
