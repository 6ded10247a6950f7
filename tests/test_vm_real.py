"""The VM's own machinery on a real boot: a forwarded port another process took first."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from lab.kernel.resolve import resolve_kernel
from lab.paths import cache_root
from lab.vm import vm as vm_mod

pytestmark = [pytest.mark.vm, pytest.mark.network]


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
        with vm_mod.Vm(kernel, run_dir=tmp_path, cache=cache_root(), name="retry") as vm:
            assert vm.port != taken
            assert vm.ssh is not None and vm.ssh.run(["true"]).status == 0
    console = (tmp_path / "console-retry.log").read_text(errors="replace")
    assert "Could not set up host forwarding rule" in console  # QEMU refused the first


def test_the_boot_binds_the_cached_host_root_and_the_zygote_becomes_the_agent(
        tmp_path: Path) -> None:
    """What the boot's speed rests on, seen in a real guest: the host root's second, cached
    9p export bound over the directories of lab.vm.hostroot; the init's PATH with the
    no-op tmpfiles; the agent started by the zygote from the pushed archive; a second
    agent in the same guest started all the same."""
    from lab.vm.agent import Agent
    from lab.vm.hostroot import TAG, fast_dirs

    cache = cache_root()
    kernel = resolve_kernel("debian:7.2", cache=cache)
    with vm_mod.Vm(kernel, run_dir=tmp_path, cache=cache, name="fast") as vm:
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
    names = [e.name for e in vm.timeline.events()]
    for event in ("host root", "sshd listening", "network", "python", "hello"):
        assert event in names, names
