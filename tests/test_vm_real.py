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
